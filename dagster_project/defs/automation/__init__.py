"""Jobs, schedules and sensors: what runs when."""

import dagster as dg

from dagster_project import asset_keys
from dagster_project.defs.automation.abandoned_runs import fail_abandoned_runs_sensor
from dagster_project.defs.automation.corrections import build_corrections_sensor, rebuild_features
from dagster_project.defs.automation.jobs import nightly_pipeline, retrain
from dagster_project.defs.automation.maintenance_schedule import (
    maintain_offline_store,
    weekly_offline_store_maintenance,
)
from dagster_project.defs.automation.schedules import nightly_schedule
from dagster_project.defs.automation.sensors import retrain_on_drift
from dagster_project.problem import load_problem
from dagster_project.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    """Jobs select assets by key and group, and take their partitions from them; only the corrections sensor needs
    the problem (its raw tables, its feature model)."""
    problem = load_problem(settings)
    corrections = build_corrections_sensor(
        [asset_keys.raw_table(node["name"]) for node in problem.raw_tables],
        asset_keys.lake_export(problem.contract.features_model),
    )
    return dg.Definitions(
        jobs=[nightly_pipeline, retrain, maintain_offline_store, rebuild_features],
        schedules=[nightly_schedule, weekly_offline_store_maintenance],
        sensors=[retrain_on_drift, fail_abandoned_runs_sensor, corrections],
    )
