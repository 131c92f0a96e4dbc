"""A process killed mid-run (out of memory, kill -9) must not leave the next run waiting for its pool slot."""

import os
import socket
import subprocess
import sys

import dagster as dg

from dagster_project.defs.automation import abandoned_runs
from dagster_project.defs.ml.assets import REGISTRY_POOL
from dagster_project.instance import local_instance
from dagster_project.settings import Settings


def _started_run(instance: dg.DagsterInstance, owner: str | None) -> dg.DagsterRun:
    tags = {abandoned_runs.OWNER_TAG: owner} if owner else {}
    run = instance.add_run(dg.DagsterRun(job_name="retrain", status=dg.DagsterRunStatus.STARTED, tags=tags))
    assert instance.event_log_storage.claim_concurrency_slot(REGISTRY_POOL, run.run_id, "churn_model").is_claimed
    return run


def test_runs_of_a_dead_process_are_failed_and_free_their_pool_slots(settings: Settings) -> None:
    instance = local_instance(settings)
    # As Dagster does when a pooled step first runs: the pool gets the instance's default limit (1).
    assert instance.event_log_storage.initialize_concurrency_limit_to_default(REGISTRY_POOL)
    host = socket.gethostname()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = _started_run(instance, f"{host}:{int(gone.stdout)}")
    # Only one slot in the pool: the second claim waits behind the dead run's.
    mine = {abandoned_runs.OWNER_TAG: f"{host}:{os.getpid()}"}
    alive = instance.add_run(dg.DagsterRun(job_name="retrain", status=dg.DagsterRunStatus.STARTED, tags=mine))
    assert not instance.event_log_storage.claim_concurrency_slot(REGISTRY_POOL, alive.run_id, "churn_model").is_claimed
    foreign = instance.add_run(dg.DagsterRun(job_name="retrain", status=dg.DagsterRunStatus.STARTED))

    assert [run_id for run_id, _ in abandoned_runs.fail_abandoned_runs(instance)] == [dead.run_id]

    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    # A live process's run and a run this module did not start (the daemon's) are left alone.
    assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
    assert instance.get_run_by_id(foreign.run_id).status == dg.DagsterRunStatus.STARTED
    info = instance.event_log_storage.get_concurrency_info(REGISTRY_POOL)
    assert dead.run_id not in {slot.run_id for slot in info.claimed_slots}
    assert instance.event_log_storage.claim_concurrency_slot(REGISTRY_POOL, alive.run_id, "churn_model").is_claimed
    assert abandoned_runs.fail_abandoned_runs(instance) == []  # nothing left to recover
