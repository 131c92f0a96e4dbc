"""A job whose steps wait until their run is killed, for tests/automation/test_killed_runs.py.

Its two assets stand where a night's pooled step (the model registry's) and its drift report are, with the same
pool and the same watched check, so that killing its run worker leaves what a killed night leaves: a claimed pool
slot and a planned drift check. Each step writes a file when it has started, so the test knows when to kill."""

import os
import time
from pathlib import Path

import dagster as dg

from dagster_project import asset_keys
from dagster_project.defs.ml.assets import REGISTRY_POOL
from dagster_project.defs.monitoring.assets import DRIFT_CHECK

DAYS = dg.DailyPartitionsDefinition(start_date="2025-01-01")
STARTED_DIR = "KILLABLE_STARTED_DIR"  # environment: where the steps say they started


class StepConfig(dg.Config):
    hang: bool = True  # wait until killed; else finish (the drift check fails)


def _started(name: str) -> None:
    folder = os.environ.get(STARTED_DIR)
    if folder:
        (Path(folder) / name).write_text(str(os.getpid()))


@dg.asset(key=dg.AssetKey(["ml", "registry_step"]), partitions_def=DAYS, pool=REGISTRY_POOL)
def registry_step(config: StepConfig) -> None:
    _started("registry_step")
    while config.hang:
        time.sleep(0.2)


@dg.asset(
    key=asset_keys.DRIFT_REPORT,
    partitions_def=DAYS,
    check_specs=[dg.AssetCheckSpec(DRIFT_CHECK, asset=asset_keys.DRIFT_REPORT)],
)
def drift_report(context: dg.AssetExecutionContext, config: StepConfig) -> dg.MaterializeResult:
    _started("drift_report")
    while config.hang:
        time.sleep(0.2)
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                check_name=DRIFT_CHECK,
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"partition": context.partition_key},
            )
        ]
    )


killable = dg.define_asset_job("killable", selection=[registry_step, drift_report])
defs = dg.Definitions(assets=[registry_step, drift_report], jobs=[killable])


def job() -> dg.JobDefinition:
    return defs.resolve_job_def("killable")
