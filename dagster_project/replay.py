"""The daemon's part, in process: tick the nightly schedule and the retrain sensor for simulated days.

In production the Dagster daemon evaluates ``nightly_pipeline_schedule`` at 02:00 every night and
``retrain_on_drift`` every few minutes, then launches the runs they request. The main command replays weeks of
simulated days in minutes, so it evaluates the *same* definitions through Dagster's own APIs
(``build_schedule_context`` / ``evaluate_tick``, ``build_sensor_context`` / ``evaluate_tick``) at the simulated
tick times, and executes the requested runs in process against the given instance. Like the daemon it tags the
runs with their schedule or sensor and skips a sensor run key that already has a run, so the history that
``dagster dev`` shows afterwards reads as if the daemon had run it. The end-to-end tests drive the same functions.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from dagster_project.defs.automation.abandoned_runs import OWNER_TAG, fail_abandoned_runs, this_process
from dagster_project.defs.automation.jobs import RETRAIN_JOB
from dagster_project.defs.automation.schedules import NIGHTLY_SCHEDULE
from dagster_project.defs.automation.sensors import SENSOR_NAME
from dagster_project.partitions import RANGE_END, RANGE_START

# The tags the daemon puts on the runs it launches (dagster._core.storage.tags).
SCHEDULE_NAME_TAG = "dagster/schedule_name"
SENSOR_NAME_TAG = "dagster/sensor_name"
RUN_KEY_TAG = "dagster/run_key"
TICK_HOUR = 2  # the schedule's hour (UTC)
# What a run over a range of days was for (a backfill's runs carry their backfill's id; these are the story's own).
RANGE_PURPOSE_TAG = "platform/range_purpose"


def tick_time(day: dt.date) -> dt.datetime:
    """When the nightly schedule ticks for partition ``day``: 02:00 UTC the next morning."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(TICK_HOUR), tzinfo=dt.UTC)


def nightly_request(defs: dg.Definitions, instance: dg.DagsterInstance, day: dt.date) -> dg.RunRequest:
    """Evaluate the nightly schedule at its tick after ``day``; returns its one run request (for ``day``)."""
    schedule = defs.resolve_schedule_def(NIGHTLY_SCHEDULE)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick_time(day))
    data = schedule.evaluate_tick(context)
    if not data.run_requests or len(data.run_requests) != 1:
        raise RuntimeError(f"the schedule requested {data.run_requests!r} at {tick_time(day)}: {data.skip_message}")
    return data.run_requests[0]


def execute_request(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    request: dg.RunRequest,
    origin_tags: Mapping[str, str],
    asset_selection: Sequence[dg.AssetKey] | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """Execute ``request`` of ``job_name`` in process, tagged like a daemon-launched run.

    Runs whose process died are failed first, as the daemon's watchdog sensor would have done by then: their pool
    slots would otherwise keep this run waiting for ever."""
    fail_abandoned_runs(instance)
    job = defs.resolve_job_def(job_name)
    config = {**(run_config or {}), **(request.run_config or {})}
    return job.execute_in_process(
        run_config=config or None,
        instance=instance,
        partition_key=request.partition_key,
        tags={**job.run_tags, **request.tags, **origin_tags, OWNER_TAG: this_process()},
        asset_selection=list(asset_selection) if asset_selection is not None else None,
        raise_on_error=False,
    )


def run_nightly(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    day: dt.date,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> tuple[dg.RunRequest, dg.ExecuteInProcessResult]:
    """The night after ``day``: the schedule's request, executed (optionally on a subset of the job's assets)."""
    request = nightly_request(defs, instance, day)
    schedule = defs.resolve_schedule_def(NIGHTLY_SCHEDULE)
    result = execute_request(
        defs, instance, schedule.job_name, request, {SCHEDULE_NAME_TAG: NIGHTLY_SCHEDULE}, asset_selection, run_config
    )
    return request, result


def run_range(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    first: dt.date,
    last: dt.date,
    asset_selection: Sequence[dg.AssetKey],
    purpose: str,
    run_config: Mapping[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """One run of the nightly job's ``asset_selection`` over the days ``first``..``last``, as a backfill's ranged
    run is (every selected asset builds the whole range: ``partitions.BACKFILL_POLICY``)."""
    schedule = defs.resolve_schedule_def(NIGHTLY_SCHEDULE)
    tags = {RANGE_START: first.isoformat(), RANGE_END: last.isoformat(), RANGE_PURPOSE_TAG: purpose}
    return execute_request(defs, instance, schedule.job_name, dg.RunRequest(tags=tags), {}, asset_selection, run_config)


@dataclass
class SensorTick:
    """One evaluation of ``retrain_on_drift`` and what came of it."""

    cursor: str | None
    skip_message: str | None
    run_requests: list[dg.RunRequest]
    launched: list[tuple[dg.RunRequest, dg.ExecuteInProcessResult]] = field(default_factory=list)
    deduplicated: list[str] = field(default_factory=list)  # run keys that already had a run


def tick_sensor(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    cursor: str | None,
    run_config: Mapping[str, Any] | None = None,
    launch: bool = True,
) -> SensorTick:
    """Evaluate the retrain sensor once and (``launch``) run what it requests, skipping known run keys."""
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        sensor_name=SENSOR_NAME,
        resources=dict(defs.resources or {}),
    )
    data = sensor.evaluate_tick(context)
    tick = SensorTick(
        cursor=data.cursor if data.cursor is not None else cursor,
        skip_message=data.skip_message,
        run_requests=list(data.run_requests or []),
    )
    if not launch:
        return tick
    for request in tick.run_requests:
        if request.run_key and instance.get_runs(
            filters=dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: SENSOR_NAME})
        ):
            tick.deduplicated.append(request.run_key)
            continue
        origin = {SENSOR_NAME_TAG: SENSOR_NAME, **({RUN_KEY_TAG: request.run_key} if request.run_key else {})}
        result = execute_request(
            defs, instance, request.job_name or RETRAIN_JOB, request, origin, run_config=run_config
        )
        tick.launched.append((request, result))
    return tick
