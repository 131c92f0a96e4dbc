"""The weekly upkeep of the offline store's Delta tables (OPTIMIZE and VACUUM)."""

import dagster as dg

from dagster_project import asset_keys

maintain_offline_store = dg.define_asset_job(
    name="maintain_offline_store",
    selection=dg.AssetSelection.assets(asset_keys.TABLE_MAINTENANCE),
    description="Compact and vacuum the Delta feature snapshots and training sets, keeping every version a "
    "registered model references readable.",
)

weekly_offline_store_maintenance = dg.ScheduleDefinition(
    name="weekly_offline_store_maintenance",
    job=maintain_offline_store,
    cron_schedule="0 4 * * 0",  # Sundays 04:00 UTC, away from the nightly pipeline
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly OPTIMIZE and VACUUM of the offline store (retention rule: spark_jobs/maintenance.py).",
)
