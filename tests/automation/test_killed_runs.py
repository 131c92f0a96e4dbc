"""A run whose worker is killed (kill -9, the out-of-memory killer) leaves nothing stuck.

The run is executed as Dagster's ``DefaultRunLauncher`` executes a run launched from the UI: a separate run worker
process (``dagster api execute_run``) running the multiprocess executor. Killing it leaves what a killed night
leaves: the run STARTED, a pool slot claimed, the drift check planned. Then:

* the retrain sensor reads on past the planned check, and acts on a later night's failed drift check;
* the watchdog sensor marks the run failed, the check resolves as "execution failed", and the slot is free for the
  next run.
"""

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import killable_job
from dagster._core.loader import LoadingContextForTest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionResolvedStatus
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import serialize_value

from dagster_project import asset_keys, replay
from dagster_project.definitions import build_definitions
from dagster_project.defs.automation import abandoned_runs
from dagster_project.defs.automation.sensors import TAG_TRIGGER_PARTITION
from dagster_project.defs.ml.assets import REGISTRY_POOL
from dagster_project.defs.monitoring.assets import DRIFT_CHECK
from dagster_project.instance import local_instance
from dagster_project.settings import Settings

KILLED_NIGHT = dt.date(2025, 3, 1)
LATER_NIGHT = KILLED_NIGHT + dt.timedelta(days=1)
DRIFT = dg.AssetCheckKey(asset_keys.DRIFT_REPORT, DRIFT_CHECK)


def _launch_worker(instance: dg.DagsterInstance, started: Path) -> tuple[dg.DagsterRun, subprocess.Popen]:
    """Create the run and start its worker as the DefaultRunLauncher does: ``dagster api execute_run``."""
    recon = dg.reconstructable(killable_job.job)
    run = instance.create_run_for_job(
        job_def=recon.get_definition(),
        job_code_origin=recon.get_python_origin(),
        tags={"dagster/partition": KILLED_NIGHT.isoformat()},
    )
    args = ExecuteRunArgs(job_origin=recon.get_python_origin(), run_id=run.run_id, instance_ref=instance.get_ref())
    env = {
        **os.environ,
        killable_job.STARTED_DIR: str(started),
        "PYTHONPATH": os.pathsep.join([str(Path(killable_job.__file__).parent), *sys.path]),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "dagster", "api", "execute_run", serialize_value(args)],
        env=env,
        start_new_session=True,  # its own process group: the kill takes the worker and its step processes
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return run, worker


def _wait_for(condition, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _record(instance: dg.DagsterInstance, run_id: str):
    history = instance.event_log_storage.get_asset_check_execution_history(DRIFT, limit=10)
    [record] = [r for r in history if r.run_id == run_id]
    return record


def _record_id(instance: dg.DagsterInstance, run_id: str) -> int:
    return _record(instance, run_id).id


def _resolved(instance: dg.DagsterInstance, run_id: str) -> AssetCheckExecutionResolvedStatus:
    # On a thread of its own: an earlier test of this worker may hold an event loop running in the main thread
    # (Playwright's sync API, the UI tests' session fixture, keeps one for the session).
    with ThreadPoolExecutor(max_workers=1) as thread:
        resolving = _record(instance, run_id).resolve_status(LoadingContextForTest(instance))
        return thread.submit(asyncio.run, resolving).result()


def _slot_holders(instance: dg.DagsterInstance) -> set[str]:
    return {slot.run_id for slot in instance.event_log_storage.get_concurrency_info(REGISTRY_POOL).claimed_slots}


def test_a_killed_run_leaves_no_stuck_check_slot_or_sensor(settings: Settings, tmp_path: Path) -> None:
    instance = local_instance(settings)
    started = tmp_path / "started"
    started.mkdir()
    run, worker = _launch_worker(instance, started)
    _wait_for(lambda: {p.name for p in started.iterdir()} == {"registry_step", "drift_report"}, "both steps")
    _wait_for(lambda: run.run_id in _slot_holders(instance), "the pool slot")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()

    # What the kill left: a run that will never report its end, its slot claimed, its check planned.
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    assert _slot_holders(instance) == {run.run_id}
    assert _resolved(instance, run.run_id) == AssetCheckExecutionResolvedStatus.IN_PROGRESS

    # The next night fails its drift check: the retrain sensor acts on it, past the killed night's planned check.
    later = killable_job.job().execute_in_process(
        instance=instance,
        partition_key=LATER_NIGHT.isoformat(),
        asset_selection=[asset_keys.DRIFT_REPORT],
        run_config={"ops": {"monitoring__drift_report": {"config": {"hang": False}}}},
        raise_on_error=False,
    )
    assert [e.passed for e in later.get_asset_check_evaluations()] == [False]
    defs = build_definitions(settings)
    tick = replay.tick_sensor(defs, instance, None, launch=False)
    assert [r.tags[TAG_TRIGGER_PARTITION] for r in tick.run_requests] == [LATER_NIGHT.isoformat()], tick.skip_message
    # The planned check waits in the cursor and is read again once its run has ended.
    assert json.loads(tick.cursor)["pending"][DRIFT.to_user_string()] == [_record_id(instance, run.run_id)]

    # The watchdog: the run is failed, its check resolves, its slot is free.
    sensor = defs.resolve_sensor_def(abandoned_runs.SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert run.run_id in (result.skip_message or ""), result.skip_message
    failed = instance.get_run_by_id(run.run_id)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert _resolved(instance, run.run_id) == AssetCheckExecutionResolvedStatus.EXECUTION_FAILED
    assert _slot_holders(instance) == set()
    next_tick = replay.tick_sensor(defs, instance, tick.cursor, launch=False)
    assert json.loads(next_tick.cursor)["pending"] == {} and not next_tick.run_requests

    # The next run that needs the pool gets its slot (it would wait for ever behind the dead run's claim).
    again = killable_job.job().execute_in_process(
        instance=instance,
        partition_key=KILLED_NIGHT.isoformat(),
        asset_selection=[dg.AssetKey(["ml", "registry_step"])],
        run_config={"ops": {"ml__registry_step": {"config": {"hang": False}}}},
    )
    assert again.success
    # Nothing else is judged: a second look finds no abandoned run.
    assert abandoned_runs.fail_abandoned_runs(instance) == []


def test_a_live_worker_and_a_reused_pid_are_told_apart() -> None:
    me = os.getpid()
    assert abandoned_runs.process_alive(me)
    assert abandoned_runs.process_alive(me, seen_at=time.time())
    # A process that started after the worker reported itself holds a reused pid: the worker is gone.
    assert not abandoned_runs.process_alive(me, seen_at=time.time() - 10 * 365 * 86400)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert not abandoned_runs.process_alive(int(gone.stdout))
