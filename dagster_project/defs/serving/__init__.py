"""Serving: the online store the prediction service (``dagster_project/service``) reads, fed from the same feature
snapshots as training and batch scoring, and the checks that prove the two paths agree."""

import dagster as dg

from dagster_project.defs.serving.assets import build_online_store
from dagster_project.defs.serving.skew import build_skew_gate
from dagster_project.partitions import daily_partitions
from dagster_project.problem import load_problem
from dagster_project.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    online_store = build_online_store(
        daily_partitions(settings), load_problem(settings).contract, settings.serving.online_backend.value
    )
    return dg.Definitions(assets=[online_store], asset_checks=[build_skew_gate()])
