"""Features: the dbt feature tables as assets (dbt tests as asset checks) and their exports to the lake."""

import dagster as dg

from dagster_project.defs.features.assets import build_feature_tables
from dagster_project.defs.features.exports import build_export_assets
from dagster_project.partitions import daily_partitions
from dagster_project.problem import load_problem
from dagster_project.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(settings)
    problem = load_problem(settings)
    feature_tables = build_feature_tables(partitions, problem)
    return dg.Definitions(assets=[feature_tables, *build_export_assets(feature_tables, partitions, problem)])
