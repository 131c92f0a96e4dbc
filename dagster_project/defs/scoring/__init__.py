"""Nightly batch scoring: the champion scores each day's feature snapshot into a Delta table of scores."""

import dagster as dg

from dagster_project.defs.scoring.assets import build_batch_scores
from dagster_project.partitions import daily_partitions
from dagster_project.problem import load_problem
from dagster_project.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[build_batch_scores(daily_partitions(settings), load_problem(settings))])
