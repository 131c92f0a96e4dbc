"""The offline feature store: Delta feature snapshots, point-in-time training sets, and their weekly upkeep (the
job and schedule that run the upkeep live with the rest of the automation, in ``automation/``)."""

import dagster as dg

from dagster_project.defs.offline_store.assets import offline_store_assets

defs = dg.Definitions(assets=offline_store_assets)
