"""Monitoring: Evidently drift reports, realized performance on matured labels, and the checks that guard them."""

import dagster as dg

from dagster_project.defs.monitoring.assets import build_drift_report, build_model_performance
from dagster_project.partitions import daily_partitions, label_horizon_mapping
from dagster_project.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(settings)
    return dg.Definitions(
        assets=[build_drift_report(partitions), build_model_performance(partitions, label_horizon_mapping(settings))]
    )
