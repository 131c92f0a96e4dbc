"""Monitoring: Evidently drift reports, realized performance on matured labels, and the checks that guard them."""

import dagster as dg

from dagster_project.defs.monitoring.assets import build_drift_report, build_model_performance
from dagster_project.defs.monitoring.online_predictions import build_online_predictions
from dagster_project.partitions import daily_partitions, label_horizon_mapping
from dagster_project.problem import load_problem
from dagster_project.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(settings)
    problem = load_problem(settings)
    matured = label_horizon_mapping(problem.contract)
    performance = build_model_performance(partitions, matured, problem)
    online = build_online_predictions(partitions, matured, problem)
    return dg.Definitions(assets=[build_drift_report(partitions), performance, online])
