"""Raw data: the problem's simulator and landing files as sources, pandera validation, quarantine."""

import dagster as dg

from dagster_project.defs.ingestion.assets import build_raw_assets
from dagster_project.defs.ingestion.schemas import table_specs
from dagster_project.defs.ingestion.sources import simulator_tables
from dagster_project.partitions import daily_partitions
from dagster_project.problem import load_problem
from dagster_project.settings import Settings, Source


def build_defs(settings: Settings) -> dg.Definitions:
    """One raw asset per raw table the problem declares."""
    problem = load_problem(settings)
    tables = table_specs(problem.raw_tables)
    if settings.source is Source.simulator:
        simulator_tables(problem.directory, tables)  # a problem without a simulator fails here, not in every run
    return dg.Definitions(assets=build_raw_assets(tables, daily_partitions(settings)))
