"""Raw data: the simulator and landing files as sources, pandera validation, quarantine."""

import dagster as dg

from dagster_project.defs.ingestion.assets import raw_assets

defs = dg.Definitions(assets=raw_assets)
