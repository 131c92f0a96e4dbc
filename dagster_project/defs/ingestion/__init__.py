"""Raw data: the simulator and landing files as sources, pandera validation, quarantine."""

import dagster as dg

from dagster_project.defs.ingestion.assets import build_raw_assets
from dagster_project.partitions import daily_partitions
from dagster_project.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=build_raw_assets(daily_partitions(settings)))
