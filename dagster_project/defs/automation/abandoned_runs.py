"""Runs whose process died: find them, mark them failed, free their pool slots.

A run killed by ``kill -9`` or the out-of-memory killer never reports its end. It stays STARTED for ever, its planned
checks stay "planned", and its pooled steps keep their slots (``model_registry``, ``duckdb_warehouse``, each
limited to 1), so the next run that needs one waits for ever. Dagster's run monitoring notices a dead worker only
for launchers that report worker health (Kubernetes, ECS, Docker); the ``DefaultRunLauncher`` of the embedded
default and of docker-compose does not, and nothing at all watches a run executed in process.

A run's worker process is known two ways:

* a run executed in process by this project (``replay``: the main command, the tests) carries the tag
  ``platform/owner`` = ``host:pid``;
* a run launched by the ``DefaultRunLauncher`` (from the UI, a schedule or a sensor) is a child process of the code
  server, and reports itself in its first engine event, "Started process for run (pid: N)". The watchdog sensor
  evaluates in that same code server, so the pid is on this host.

A pid is judged dead when no process has it, or when the process that has it started after the run's worker
reported itself (the pid was reused). Only runs whose worker is on this host are judged; any other run is left to
the launcher's own monitoring.
"""

import datetime as dt
import os
import socket
from pathlib import Path

import dagster as dg

SENSOR_NAME = "fail_abandoned_runs"
# host:pid of the process executing an in-process run.
OWNER_TAG = "platform/owner"
UNFINISHED = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
# What the run worker's first engine event says (dagster/_cli/api.py, dagster/_grpc/impl.py).
WORKER_STARTED = "Started process for run"
PROC = Path("/proc")


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _boot_time() -> float | None:
    try:
        for line in (PROC / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces), where the system has it."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), where the system says (Linux ``/proc``); else None."""
    boot, fields = _boot_time(), _stat_fields(pid)
    if boot is None or fields is None:
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time in clock ticks after boot


def process_alive(pid: int, seen_at: float | None = None) -> bool:
    """Whether ``pid`` is the live process that was running at ``seen_at`` (epoch seconds; None: any process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    fields = _stat_fields(pid)
    if fields is not None and fields[0] in {"Z", "X"}:
        return False  # a zombie: killed, waiting for its parent to read its exit status
    if seen_at is None:
        return True
    started = process_start_time(pid)
    # A process started after the worker reported itself holds a reused pid (a second of slack for clock ticks).
    return started is None or started <= seen_at + 1.0


def _launched_worker(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[int, float] | None:
    """The pid the run's worker reported, and when; None if it has not reported (still starting) or never will."""
    for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        if event is None or not (event.message or "").startswith(WORKER_STARTED):
            continue
        pid = event.engine_event_data.metadata.get("pid") if event.engine_event_data else None
        if pid is not None and str(pid.value).isdigit():
            return int(pid.value), record.timestamp
    return None


def worker_is_dead(instance: dg.DagsterInstance, run: dg.DagsterRun, host: str) -> str | None:
    """Why ``run``'s worker is known to be gone (a sentence), or None if it is alive or not on this host."""
    owner = run.tags.get(OWNER_TAG)
    if owner:
        owner_host, _, pid = owner.rpartition(":")
        if owner_host != host or not pid.isdigit() or process_alive(int(pid)):
            return None
        return f"its process ({owner}) ended before the run did"
    if not _launched_by_this_host(instance):
        return None
    worker = _launched_worker(instance, run)
    if worker is None:
        return None  # not started yet: run monitoring's start timeout covers a worker that never starts
    pid, seen_at = worker
    if process_alive(pid, seen_at):
        return None
    reported = dt.datetime.fromtimestamp(seen_at, dt.UTC)
    return f"its run worker (pid {pid}, started {reported:%Y-%m-%d %H:%M:%S} UTC) is gone"


def _launched_by_this_host(instance: dg.DagsterInstance) -> bool:
    # The DefaultRunLauncher starts each run as a child of the code server that evaluates this sensor; other
    # launchers put the worker elsewhere (a pod, a task, a container) and report its health themselves.
    return type(instance.run_launcher).__name__ == "DefaultRunLauncher"


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    """Mark failed the unfinished runs whose worker process died, and free their pool slots; returns (run id, why)
    for each. A run whose worker has not reported itself yet is still starting, and left alone."""
    host = socket.gethostname()
    abandoned = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED)):
        why = worker_is_dead(instance, run, host)
        if why is None:
            continue
        instance.report_run_failed(run, message=f"Marked failed by {SENSOR_NAME}: {why}.")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        abandoned.append((run.run_id, why))
    return abandoned


@dg.sensor(
    name=SENSOR_NAME,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Marks failed the runs whose worker process died without reporting its end (kill -9, out of memory), so "
        "their planned checks resolve and their pool slots are freed for the next run. Judges only workers on the "
        "code server's host (the DefaultRunLauncher's, and in-process runs tagged platform/owner)."
    ),
)
def fail_abandoned_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    failed = fail_abandoned_runs(context.instance)
    for run_id, why in failed:
        context.log.warning(f"run {run_id} marked failed: {why}")
    if not failed:
        return dg.SkipReason("No unfinished run has lost its worker.")
    return dg.SkipReason(f"Marked failed {len(failed)} run(s) whose worker died: {', '.join(r for r, _ in failed)}.")
