"""The offline feature store: Delta feature snapshots, point-in-time training sets, and their weekly upkeep (the
job and schedule that run the upkeep live with the rest of the automation, in ``automation/``)."""

import dagster as dg

from dagster_project.defs.offline_store.assets import build_feature_snapshots, build_training_set, table_maintenance
from dagster_project.partitions import daily_partitions
from dagster_project.problem import load_problem
from dagster_project.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    problem = load_problem(settings)
    snapshots = build_feature_snapshots(daily_partitions(settings), problem)
    return dg.Definitions(assets=[snapshots, build_training_set(problem), table_maintenance])
