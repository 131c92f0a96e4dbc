"""The weekly upkeep of the offline store's Delta tables (OPTIMIZE and VACUUM)."""

import dagster as dg

# Spelled out rather than imported, so that this module never imports the offline_store package (which imports
# this module to register the schedule).
TABLE_MAINTENANCE = dg.AssetKey(["offline_store", "table_maintenance"])

maintain_offline_store = dg.define_asset_job(
    name="maintain_offline_store",
    selection=dg.AssetSelection.assets(TABLE_MAINTENANCE),
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
