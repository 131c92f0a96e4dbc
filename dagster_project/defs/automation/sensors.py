"""``retrain_on_drift``: when a drift or performance check fails, request one retraining, then cool down.

What it watches: the ERROR-severity checks ``monitoring/drift_report:drift_share_below_threshold`` and
``monitoring/model_performance:realized_auc_within_tolerance``, read from the instance's asset-check history.

What it decides, per tick:

* new failed evaluations since the last tick (the cursor holds, per check, the evaluation id handled so far);
* each failure belongs to a day: the partition the check evaluated;
* a failure triggers a retrain only if its day is at least ``retrain_cooldown_days`` after the day of the
  failure that triggered the previous retrain. The cooldown counts *partition days*, not wall-clock time: a
  backfill or the simulated story runs many days in minutes, and a drift that persists for a week of data must
  trigger one retrain whether that week took seven nights or seven minutes;
* at most one retrain per tick, for the newest eligible failure (its day starts the next cooldown);
* the run key is the triggering day, so one failing day never starts two retrains (the daemon skips a run key
  it has seen, even after a cursor reset), and the run carries tags that say why.

The previous trigger day is read from the run history (tag ``retrain/trigger_partition`` of ``retrain`` runs) as
well as from the cursor, so resetting the cursor does not reset the cooldown.
"""

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg

from dagster_project import asset_keys
from dagster_project.defs.automation.jobs import RETRAIN_JOB, retrain
from dagster_project.defs.monitoring.assets import (
    DRIFT_CHECK,
    PERFORMANCE_CHECK,
)
from dagster_project.resources import ThresholdsResource

if TYPE_CHECKING:  # the record type is not exported at dagster's top level; only its fields are used here
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecord

# Execution record states (AssetCheckExecutionRecordStatus values).
PLANNED, FAILED = "PLANNED", "FAILED"

SENSOR_NAME = "retrain_on_drift"
TAG_REASON = "retrain/reason"
TAG_TRIGGER_PARTITION = "retrain/trigger_partition"
TAG_FAILED_CHECKS = "retrain/failed_checks"
TAG_DETAIL = "retrain/detail"
# The checks watched, and the reason each gives a retrain.
WATCHED_CHECKS: dict[dg.AssetCheckKey, str] = {
    dg.AssetCheckKey(asset_keys.DRIFT_REPORT, DRIFT_CHECK): "drift",
    dg.AssetCheckKey(asset_keys.MODEL_PERFORMANCE, PERFORMANCE_CHECK): "performance",
}
PAGE = 100
MAX_TAG_LENGTH = 250


@dataclass(frozen=True)
class CheckFailure:
    """One failed ERROR-severity evaluation of a watched check."""

    check_key: dg.AssetCheckKey
    reason: str  # drift | performance
    partition: dt.date
    record_id: int
    run_id: str
    detail: str

    @property
    def label(self) -> str:
        return f"{self.check_key.asset_key.to_user_string()}:{self.check_key.name}@{self.partition}"


@dataclass(frozen=True)
class RetrainCursor:
    """Per watched check, the evaluation id read up to and the ids still awaiting their run's verdict; and the day of
    the last requested retrain."""

    handled: dict[str, int]
    last_trigger: dt.date | None
    pending: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> "RetrainCursor":
        if not raw:
            return cls(handled={}, last_trigger=None)
        data = json.loads(raw)
        last = data.get("last_trigger")
        return cls(
            handled={k: int(v) for k, v in data.get("handled", {}).items()},
            last_trigger=dt.date.fromisoformat(last) if last else None,
            pending={k: [int(i) for i in v] for k, v in data.get("pending", {}).items()},
        )

    def serialize(self) -> str:
        return json.dumps(
            {
                "handled": self.handled,
                "last_trigger": self.last_trigger.isoformat() if self.last_trigger else None,
                "pending": {k: v for k, v in self.pending.items() if v},
            },
            sort_keys=True,
        )


def _metadata_value(evaluation: dg.AssetCheckEvaluation, key: str) -> object | None:
    entry = evaluation.metadata.get(key)
    return None if entry is None else getattr(entry, "value", entry)


def _partition_of(
    instance: dg.DagsterInstance, record: "AssetCheckExecutionRecord", evaluation: dg.AssetCheckEvaluation
) -> dt.date | None:
    """The day an evaluation judged: its own partition, else the partition of the materialization it checked."""
    for candidate in (record.partition, evaluation.partition, _metadata_value(evaluation, "partition")):
        if candidate:
            return dt.date.fromisoformat(str(candidate))
    target = evaluation.target_materialization_data
    if target is not None:
        found = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=evaluation.asset_key, storage_ids=[target.storage_id]), limit=1
        ).records
        if found and found[0].partition_key:
            return dt.date.fromisoformat(found[0].partition_key)
    return None


def _detail(reason: str, evaluation: dg.AssetCheckEvaluation) -> str:
    if evaluation.description:
        return evaluation.description
    if reason == "drift":
        return f"share of drifted features {_metadata_value(evaluation, 'share_of_drifted_features')}"
    return f"realized ROC AUC {_metadata_value(evaluation, 'realized_roc_auc')}"


def _records_after(
    instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, after: int
) -> list["AssetCheckExecutionRecord"]:
    """Every execution record of ``check_key`` with an id above ``after``, oldest first.

    The one call to Dagster's storage layer rather than its public API: Dagster 1.13 publishes only the latest
    evaluation of a check (``get_latest_asset_check_evaluation_record``), and a sensor that must see every failure
    since its last tick needs the history. Kept in this one function, exercised by tests/automation, and run with
    deprecation warnings raised as errors, so a change of that API fails the suite instead of the sensor.
    """
    records: list[AssetCheckExecutionRecord] = []
    cursor: int | None = None
    while True:
        page = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=PAGE, cursor=cursor)
        fresh = [r for r in page if r.id > after]
        records.extend(fresh)
        if len(page) < PAGE or len(fresh) < len(page):
            break
        cursor = page[-1].id
    return sorted(records, key=lambda r: r.id)


def new_failures(
    instance: dg.DagsterInstance, cursor: RetrainCursor
) -> tuple[list[CheckFailure], dict[str, int], dict[str, list[int]]]:
    """Failed ERROR evaluations of the watched checks since ``cursor``; the ids read up to; the ids still pending.

    An evaluation row is created when a run plans the check and completed in place when it runs. A row whose run is
    still going is kept aside as pending and read again on later ticks, while the rows after it are read now: a run
    that never finishes (its process was killed) must not hide the failures of the nights after it.
    """
    failures: list[CheckFailure] = []
    handled: dict[str, int] = {}
    pending: dict[str, list[int]] = {}
    for check_key, reason in WATCHED_CHECKS.items():
        key = check_key.to_user_string()
        position = cursor.handled.get(key, 0)
        awaited = set(cursor.pending.get(key, []))
        waiting: list[int] = []
        for record in _records_after(instance, check_key, min([position, *(i - 1 for i in awaited)])):
            if record.id <= position and record.id not in awaited:
                continue  # read on an earlier tick
            position = max(position, record.id)
            if record.status.value == PLANNED:
                run = instance.get_run_by_id(record.run_id)
                if run is not None and not run.is_finished:
                    waiting.append(record.id)  # in progress: its verdict is read on a later tick
                continue  # else the run ended without evaluating it: skipped
            if record.status.value != FAILED or record.event is None:
                continue
            evaluation = record.event.dagster_event.event_specific_data  # an AssetCheckEvaluation
            if evaluation.severity is not dg.AssetCheckSeverity.ERROR:
                continue
            partition = _partition_of(instance, record, evaluation)
            if partition is None:
                continue  # not tied to a day: cannot be placed against the cooldown
            failures.append(
                CheckFailure(check_key, reason, partition, record.id, record.run_id, _detail(reason, evaluation))
            )
        handled[key] = position
        pending[key] = waiting
    return failures, handled, pending


def last_trigger_in_history(instance: dg.DagsterInstance, limit: int = 50) -> dt.date | None:
    """The day of the failure behind the most recent retrain run (any run of the job carrying the tag)."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=RETRAIN_JOB), limit=limit)
    days = [dt.date.fromisoformat(r.tags[TAG_TRIGGER_PARTITION]) for r in runs if r.tags.get(TAG_TRIGGER_PARTITION)]
    return max(days, default=None)


def _latest_state(instance: dg.DagsterInstance) -> str:
    """One line per watched check: its latest verdict, for the skip reason."""
    parts = []
    for check_key in WATCHED_CHECKS:
        page = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=20)
        record = next((r for r in page if r.status.value != PLANNED and r.event is not None), None)
        if record is None or record.event is None:
            parts.append(f"{check_key.name}: no evaluation yet")
            continue
        evaluation = record.event.dagster_event.event_specific_data
        day = _partition_of(instance, record, evaluation)
        verdict = "passed" if evaluation.passed else "failed"
        parts.append(f"{check_key.name}: {verdict}{f' on {day}' if day else ''}")
    return "; ".join(parts)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TAG_LENGTH else text[: MAX_TAG_LENGTH - 1] + "…"


def _labels(failures: Iterable[CheckFailure]) -> str:
    return ", ".join(f.label for f in failures)


def decide(
    failures: list[CheckFailure], last_trigger: dt.date | None, cooldown_days: int
) -> tuple[CheckFailure | None, list[CheckFailure]]:
    """The failure that triggers a retrain (or None), and the failures the cooldown holds back.

    A failure is eligible when its day is at least ``cooldown_days`` after ``last_trigger``. Of the eligible,
    the newest triggers (one retrain per tick); the others ride along with it.
    """
    if last_trigger is None:
        eligible = list(failures)
    else:
        first_allowed = last_trigger + dt.timedelta(days=cooldown_days)
        # cooldown 0 still refuses a day older than the last trigger: a backfill of old days does not retrain.
        eligible = [f for f in failures if f.partition >= first_allowed and f.partition >= last_trigger]
    held = [f for f in failures if f not in eligible]
    if not eligible:
        return None, held
    trigger = max(eligible, key=lambda f: (f.partition, f.record_id))
    return trigger, held


def run_key_for(day: dt.date) -> str:
    return f"retrain-for-{day.isoformat()}"


@dg.sensor(
    name=SENSOR_NAME,
    job=retrain,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Watches the drift and realized-performance checks (severity ERROR). When one fails, requests one run of "
        "the `retrain` job (training set, model, promotion gate) keyed by the failing day, tagged with the reason. "
        "Failures within `retrain_cooldown_days` partition days of the last triggering failure are held back "
        "(PLATFORM_THRESHOLDS__RETRAIN_COOLDOWN_DAYS). Skips, saying so, when nothing failed."
    ),
)
def retrain_on_drift(context: dg.SensorEvaluationContext, thresholds: ThresholdsResource) -> dg.SensorResult:
    """Request a retraining when a drift or performance check fails, at most once per cooldown."""
    cooldown = thresholds.retrain_cooldown_days
    cursor = RetrainCursor.parse(context.cursor)
    failures, handled, pending = new_failures(context.instance, cursor)
    known = [d for d in (cursor.last_trigger, last_trigger_in_history(context.instance)) if d is not None]
    last_trigger = max(known, default=None)

    if not failures:
        return dg.SensorResult(
            skip_reason=(
                f"No drift or performance check failed since the last tick ({_latest_state(context.instance)})."
            ),
            cursor=RetrainCursor(handled, cursor.last_trigger, pending).serialize(),
        )
    trigger, held = decide(failures, last_trigger, cooldown)
    if trigger is None:
        assert last_trigger is not None  # nothing is held back without a previous trigger
        next_day = max(last_trigger + dt.timedelta(days=cooldown), last_trigger)
        return dg.SensorResult(
            skip_reason=(
                f"{len(held)} failed check(s) held back by the cooldown ({_labels(held)}): the last retrain was "
                f"triggered by the failure of {last_trigger}, and the cooldown is {cooldown} partition days; the "
                f"next retrain can be triggered by a failure on or after {next_day}."
            ),
            cursor=RetrainCursor(handled, cursor.last_trigger, pending).serialize(),
        )

    riding = sorted((f for f in failures if f is not trigger and f not in held), key=lambda f: f.partition)
    reasons = sorted({trigger.reason, *(f.reason for f in riding)})
    context.log.info(
        f"requesting a retrain for the failure of {trigger.label} ({trigger.detail})"
        + (f"; also failed: {_labels(riding)}" if riding else "")
        + (f"; held back by the cooldown: {_labels(held)}" if held else "")
    )
    request = dg.RunRequest(
        run_key=run_key_for(trigger.partition),
        tags={
            TAG_REASON: "+".join(reasons),
            TAG_TRIGGER_PARTITION: trigger.partition.isoformat(),
            TAG_FAILED_CHECKS: _clip(_labels([trigger, *riding])),
            TAG_DETAIL: _clip(trigger.detail),
            "retrain/trigger_run_id": trigger.run_id,
        },
    )
    return dg.SensorResult(
        run_requests=[request], cursor=RetrainCursor(handled, trigger.partition, pending).serialize()
    )
