"""The whole story: what the main command runs.

1. **The history**: the data layers of every day (raw tables, dbt features and labels, the offline store's
   snapshots, the online store) are built first, in ranged runs of ``nightly_pipeline`` of up to
   ``HISTORY_DAYS_PER_RUN`` days each, as a backfill builds them (in longer runs than a backfill's month). They
   depend on the data only, never on a model, so they come out exactly as night by night would make them, for a
   fraction of the cost (one dbt build, one Delta commit and one run per range instead of per day). The online
   store holds one day: each ranged run publishes its last, so it ends on the story's last.
2. **The nights**, day by day, where a decision can depend on the night before:

   a. once enough labels have matured to train on (``first_training_day``) and no champion exists yet, the first
      model is trained by a run of the ``retrain`` job (tagged ``retrain/reason=bootstrap``): the platform's first
      model is a deliberate act, not a sensor's reaction;
   b. the nightly schedule is evaluated at its tick after D (02:00 UTC on D + 1), and its run request for
      partition D is executed for what needs a model: batch scores, drift and realized performance. Before the
      first champion exists there is nothing to score with: those nights are the warm-up;
   c. the ``retrain_on_drift`` sensor is evaluated; a retrain it requests runs at once (training set, model,
      promotion gate), so the next night scores with whatever the gate decided.

   Every retrain after night D trains as of D (``labels_matured_by``): the lake already holds later days, and a
   model trained on night D must not see a label that matured after it.

Everything runs as real Dagster runs against the instance under the data root, tagged as the daemon would tag
them (``replay``), so ``dagster dev`` shows the whole history afterwards.
"""

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from dagster_project import asset_keys, replay
from dagster_project.defs.automation.abandoned_runs import fail_abandoned_runs
from dagster_project.defs.automation.jobs import RETRAIN_JOB
from dagster_project.defs.automation.sensors import TAG_REASON, TAG_TRIGGER_PARTITION
from dagster_project.defs.ml.assets import churn_model
from dagster_project.defs.ml.training import TrainingParams
from dagster_project.defs.monitoring.assets import (
    DRIFT_CHECK,
    PERFORMANCE_CHECK,
)
from dagster_project.partitions import day_chunks
from dagster_project.problem import load_problem
from dagster_project.resources import LakeResource, MlflowResource, SparkResource
from dagster_project.settings import Settings

# Days of training snapshots the first model needs beyond the label horizon and the validation window.
MIN_TRAINING_DAYS = 7
# What a night decides with a model: every other asset of the nightly job is data, built ahead in ranges.
MODEL_KEYS = frozenset({asset_keys.BATCH_SCORES, asset_keys.DRIFT_REPORT, asset_keys.MODEL_PERFORMANCE})
# The story serves no online traffic: the judgement of the prediction service's log has nothing to read.
NOT_IN_STORY = frozenset({asset_keys.ONLINE_PREDICTIONS})
TRAINING_SET_OP = asset_keys.TRAINING_SET.to_python_identifier()
# The history's days per ranged run: a run has fixed costs (a dbt parse and its 138 tests, a Spark job's plan and
# Delta commit, the run's own events) that a backfill's monthly runs (``MAX_DAYS_PER_RUN``) pay four times over a
# 120-day story. The story's 3,000 customers make 360,000 snapshot rows in 120 days: one run holds them easily.
HISTORY_DAYS_PER_RUN = 120
HISTORY_PURPOSE = "story history"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def first_training_day(settings: Settings) -> dt.date:
    """The first day whose matured labels can train and validate a model.

    Labels of snapshot S mature on S + N (the horizon); the model validates on the last ``validation_days`` of
    matured snapshots and trains on rows whose label window closes before validation starts, so training rows
    exist once ``2 N + validation_days`` days have passed; a week more gives the first model something to learn.
    """
    horizon = load_problem(settings).contract.horizon_days
    return settings.history_start + dt.timedelta(
        days=2 * horizon + TrainingParams().validation_days + MIN_TRAINING_DAYS
    )


@dataclass
class Retrain:
    day: dt.date  # the simulated day it ran after
    reason: str  # bootstrap | drift | performance | drift+performance
    trigger: str | None  # the failing day that triggered it
    success: bool
    version: str | None = None  # the registered challenger
    decision: str | None = None  # promoted | rejected
    holdout_auc: float | None = None
    champion_auc: float | None = None  # the champion's on the same holdout, before the decision
    training_set_fingerprint: str | None = None  # the content of the rows it was trained on (order-independent)


@dataclass
class DayRecord:
    day: dt.date
    success: bool
    warm_up: bool
    champion: str | None = None  # the version that scored
    drift_share: float | None = None
    drift_failed: bool = False
    drifted_features: str = ""
    prediction_drift: float | None = None
    realized_auc: float | None = None
    realized_version: str | None = None  # the version whose matured scores were judged
    performance_failed: bool = False
    sensor: str = ""  # the sensor's skip reason, or the run key it requested
    error: str | None = None


@dataclass
class StorySummary:
    first: dt.date
    last: dt.date
    scenario: str
    drift_start: dt.date
    customers: int
    first_training_day: dt.date
    days: list[DayRecord] = field(default_factory=list)
    retrains: list[Retrain] = field(default_factory=list)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # registered versions and their AUCs
    totals: dict[str, dict[str, int]] = field(default_factory=dict)  # raw tables: rows in/kept/quarantined
    abandoned_runs: list[str] = field(default_factory=list)  # left running by an earlier process that died


def _metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        if event.asset_key == key:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    return {}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _error(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    if not failures:
        return "run failed"
    event = failures[0]
    message = event.step_failure_data.error.message.strip().splitlines()[0] if event.step_failure_data.error else ""
    return f"{event.step_key}: {message}"


def _retrain_record(day: dt.date, reason: str, trigger: str | None, result: dg.ExecuteInProcessResult) -> Retrain:
    model = _metadata(result, asset_keys.CHURN_MODEL)
    fingerprint = _metadata(result, asset_keys.TRAINING_SET).get("content_fingerprint")
    return Retrain(
        day=day,
        reason=reason,
        trigger=trigger,
        success=result.success,
        version=str(model["model_version"]) if "model_version" in model else None,
        decision=model.get("decision"),
        holdout_auc=model.get("holdout_roc_auc"),
        champion_auc=model.get("champion_holdout_roc_auc"),
        training_set_fingerprint=None if fingerprint is None else str(fingerprint),
    )


def _champion_version(store: MlflowResource) -> str | None:
    from dagster_project.defs.ml import registry

    version = registry.version_by_alias(store, "champion")
    return None if version is None else str(version.version)


def _versions(store: MlflowResource) -> dict[str, dict[str, Any]]:
    """Every registered version: its validation AUC, the gate's decision, whether it is the champion."""
    from mlflow.exceptions import MlflowException

    client = store.client()
    try:
        found = client.search_model_versions(f"name='{store.model_name}'")
    except MlflowException:
        return {}
    champion = _champion_version(store)
    out = {}
    for mv in sorted(found, key=lambda v: int(v.version)):
        auc = mv.tags.get("metric.roc_auc")
        out[str(mv.version)] = {
            "validation_auc": None if auc is None else float(auc),
            "decision": mv.tags.get("promotion.decision", "pending"),
            "champion": str(mv.version) == champion,
        }
    return out


def _retrain_config(training_config: dict[str, Any] | None, as_of: dt.date) -> dict[str, Any]:
    """A retrain after night ``as_of`` trains on what was known that night: the lake holds later days already."""
    ops: dict[str, Any] = {TRAINING_SET_OP: {"config": {"labels_matured_by": as_of.isoformat()}}}
    if training_config:
        ops[churn_model.op.name] = {"config": training_config}
    return {**QUIET, "ops": ops}


def run_story(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    days: list[dt.date],
    store: MlflowResource,
    on_day: Callable[[DayRecord, StorySummary], None] | None = None,
    training_config: dict[str, Any] | None = None,
    on_history: Callable[[dt.date, dt.date, bool], None] | None = None,
) -> StorySummary:
    """Run the story over ``days``; ``on_history`` is called after each range of the history is built, ``on_day``
    after each night (the progress bars)."""
    sim = settings.simulator
    summary = StorySummary(
        first=days[0],
        last=days[-1],
        scenario=sim.scenario.value,
        drift_start=sim.drift_start,
        customers=sim.customers,
        first_training_day=first_training_day(settings),
        abandoned_runs=[run_id for run_id, _ in fail_abandoned_runs(instance)],
    )
    nightly_job = defs.resolve_job_def("nightly_pipeline")
    executable = [key for key in nightly_job.asset_layer.executable_asset_keys if key not in NOT_IN_STORY]
    model_keys = [key for key in executable if key in MODEL_KEYS]
    data_keys = [key for key in executable if key not in MODEL_KEYS]
    spark, lake = ((defs.resources or {}).get(name) for name in ("spark", "lake"))
    if isinstance(spark, SparkResource) and isinstance(lake, LakeResource):
        # The first Spark step (the snapshots) comes after the raw tables and dbt: the session starts meanwhile, on
        # the core dbt leaves free. Should it fail here, the step starts it again and reports the error.
        threading.Thread(target=spark.get_session, args=(lake.object_store,), name="spark-session-start",
                         daemon=True).start()  # fmt: skip
    built = _build_history(defs, instance, days, data_keys, summary, on_history)
    cursor: str | None = None
    champion = _champion_version(store)
    for day in days:
        if champion is None and day >= summary.first_training_day:
            request = dg.RunRequest(tags={TAG_REASON: "bootstrap"})
            # It runs before night D is built in a night-by-night story: it knows the labels up to D - 1.
            config = _retrain_config(training_config, day - dt.timedelta(days=1))
            result = replay.execute_request(defs, instance, RETRAIN_JOB, request, {}, run_config=config)
            summary.retrains.append(_retrain_record(day, "bootstrap", None, result))
            champion = _champion_version(store)

        warm_up = champion is None
        error = built.get(day)
        record = DayRecord(day=day, success=error is None, warm_up=warm_up, error=error)
        if not warm_up and error is None:
            _, result = replay.run_nightly(defs, instance, day, asset_selection=model_keys, run_config=QUIET)
            record.success = result.success
            if not result.success:
                record.error = _error(result)
            _collect_night(result, record)
            tick = replay.tick_sensor(defs, instance, cursor, run_config=_retrain_config(training_config, day))
            cursor = tick.cursor
            record.sensor = tick.skip_message or ", ".join(r.run_key or "" for r in tick.run_requests)
            for request, launched in tick.launched:
                summary.retrains.append(
                    _retrain_record(
                        day, request.tags.get(TAG_REASON, "?"), request.tags.get(TAG_TRIGGER_PARTITION), launched
                    )
                )
            champion = _champion_version(store)
        summary.days.append(record)
        if on_day is not None:
            on_day(record, summary)
    summary.versions = _versions(store)
    return summary


def _build_history(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    days: list[dt.date],
    data_keys: list[dg.AssetKey],
    summary: StorySummary,
    on_range: Callable[[dt.date, dt.date, bool], None] | None = None,
) -> dict[dt.date, str]:
    """Build the data layers of every day (raw tables, dbt features and labels, offline-store snapshots, the online
    store's latest day) in ranged runs of up to ``HISTORY_DAYS_PER_RUN`` days, as a backfill does. Returns the
    error of each day whose range failed.

    They depend on the data only, never on a model, so they come out as they would night by night; what a night
    decides (scores, drift, the sensor's retrains) runs night by night afterwards, and a retrain reads only the
    labels that had matured by its night (``_retrain_config``)."""
    errors: dict[dt.date, str] = {}
    if not data_keys:
        return errors
    for first, last in day_chunks(days[0], days[-1], HISTORY_DAYS_PER_RUN):
        result = replay.run_range(defs, instance, first, last, data_keys, HISTORY_PURPOSE, run_config=QUIET)
        _collect_totals(result, summary)
        if not result.success:
            error = _error(result)
            errors.update({day: error for day in days if first <= day <= last})
        if on_range is not None:
            on_range(first, last, result.success)
    return errors


def _collect_totals(result: dg.ExecuteInProcessResult, summary: StorySummary) -> None:
    """Add the raw tables' rows in, kept and quarantined (on each day's materialization) to the story's totals."""
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        table = event.asset_key.to_user_string()
        for name in ("rows_in", "rows_kept", "rows_quarantined"):
            if name in metadata:
                counts = summary.totals.setdefault(table, {"rows_in": 0, "rows_kept": 0, "rows_quarantined": 0})
                counts[name] += int(metadata[name].value)


def _collect_night(result: dg.ExecuteInProcessResult, record: DayRecord) -> None:
    scores = _metadata(result, asset_keys.BATCH_SCORES)
    record.champion = scores.get("model_version")
    drift = _metadata(result, asset_keys.DRIFT_REPORT)
    if drift:
        record.drift_share = drift.get("share_of_drifted_features")
        record.drifted_features = drift.get("drifted_features", "")
        record.prediction_drift = drift.get("prediction_drift_score")
    performance = _metadata(result, asset_keys.MODEL_PERFORMANCE)
    if performance.get("evaluated"):
        record.realized_auc = performance.get("realized_roc_auc")
        record.realized_version = performance.get("model_version")
    checks = _checks(result)
    record.drift_failed = DRIFT_CHECK in checks and not checks[DRIFT_CHECK].passed
    record.performance_failed = PERFORMANCE_CHECK in checks and not checks[PERFORMANCE_CHECK].passed


def _span(days: list[dt.date]) -> str:
    """Consecutive days as ranges: 2025-04-03..2025-04-09, 2025-04-12."""
    if not days:
        return "none"
    parts, start, previous = [], days[0], days[0]
    for day in [*days[1:], None]:
        if day is not None and day == previous + dt.timedelta(days=1):
            previous = day
            continue
        parts.append(str(start) if start == previous else f"{start}..{previous}")
        if day is not None:
            start = previous = day
    return ", ".join(parts)


def _auc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_summary(summary: StorySummary) -> str:
    """The short printed summary: days scored, drift days, retrains, champions and their AUCs."""
    days = summary.days
    ran = [d for d in days if d.success]
    scored = [d.day for d in days if d.champion is not None]
    drifted = [d for d in days if d.drift_failed]
    judged = [d for d in days if d.realized_auc is not None]
    lines = [
        f"{len(ran)} of {len(days)} nights ran ({summary.first} to {summary.last}); scenario {summary.scenario}"
        + (f" from {summary.drift_start}" if summary.scenario != "none" else "")
        + f"; {summary.customers:,} customers at the start",
        f"  warm-up (no model yet): {sum(d.warm_up for d in days)} nights; enough matured labels to train from "
        f"{summary.first_training_day}",
        f"  days scored: {len(scored)} ({_span(scored)})",
    ]
    if summary.abandoned_runs:
        lines.insert(
            0,
            f"{len(summary.abandoned_runs)} runs left unfinished by an earlier, interrupted process "
            f"were marked failed first (their pool slots freed)",
        )
    if drifted:
        peak = max(drifted, key=lambda d: d.drift_share or 0)
        top = [f for f in peak.drifted_features.split(", ") if f]
        named = ", ".join(top[:5]) + (f" and {len(top) - 5} more" if len(top) > 5 else "")
        lines.append(
            f"  drift detected on {len(drifted)} days: {_span([d.day for d in drifted])} (peak "
            f"{(peak.drift_share or 0):.0%} of features on {peak.day}: {named})"
        )
    else:
        shares = [d.drift_share for d in days if d.drift_share is not None]
        lines.append(f"  drift detected on no day (largest share of drifted features {max(shares, default=0):.0%})")
    if judged:
        aucs = [d.realized_auc for d in judged if d.realized_auc is not None]
        failed = [d.day for d in judged if d.performance_failed]
        lines.append(
            f"  realized ROC AUC on matured labels: {len(judged)} days, {min(aucs):.3f}..{max(aucs):.3f}"
            + (f"; below tolerance on {_span(failed)}" if failed else "; within tolerance every day")
        )
    else:
        lines.append("  realized ROC AUC: no scored day has matured labels yet (labels mature after the horizon)")
    triggered = [r for r in summary.retrains if r.reason != "bootstrap"]
    lines.append(f"  retrains triggered by the sensor: {len(triggered)}")
    for r in summary.retrains:
        outcome = "failed" if not r.success else f"v{r.version} {r.decision or 'pending'}"
        trigger = f"for {r.trigger}" if r.trigger else ""
        lines.append(
            f"    {r.day}  {r.reason:<17} {trigger:<14} {outcome:<13} holdout AUC {_auc(r.holdout_auc)}"
            f" (champion on the same rows: {_auc(r.champion_auc)})"
        )
    realized: dict[str, list[float]] = {}
    for d in judged:
        if d.realized_version and d.realized_auc is not None:
            realized.setdefault(d.realized_version, []).append(d.realized_auc)

    def describe(version: str) -> str:
        info = summary.versions.get(version, {})
        seen = realized.get(version)
        mean = f", realized {sum(seen) / len(seen):.3f} over {len(seen)} days" if seen else ""
        return f"v{version} (validation AUC {_auc(info.get('validation_auc'))}{mean})"

    scorers = list(dict.fromkeys(d.champion for d in days if d.champion))
    final = next((v for v, info in summary.versions.items() if info.get("champion")), None)
    if final is not None and final not in scorers:
        scorers.append(final)  # promoted after the last night: it scores from the next one
    if scorers:
        lines.append("  champions, in turn: " + " -> ".join(describe(v) for v in scorers))
        before = next((d.champion for d in days if d.champion and d.day >= summary.drift_start), None)
        if summary.scenario != "none" and before is not None and final is not None:
            lines.append(f"  when the drift started: {describe(before)}; at the end: {describe(final)}")
    for d in [d for d in days if not d.success][:5]:
        lines.append(f"  FAILED {d.day}: {d.error}")
    return "\n".join(lines)
