"""The offline feature store: Delta feature snapshots, point-in-time training sets, and their weekly upkeep."""

import dagster as dg

from dagster_project.defs.automation.maintenance_schedule import (
    maintain_offline_store,
    weekly_offline_store_maintenance,
)
from dagster_project.defs.offline_store.assets import offline_store_assets

defs = dg.Definitions(
    assets=offline_store_assets,
    jobs=[maintain_offline_store],
    schedules=[weekly_offline_store_maintenance],
)
