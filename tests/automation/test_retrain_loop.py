"""The loop end to end on a real Dagster instance, driven by the main command's own story logic: the nightly
schedule evaluated at its ticks, the first model trained once labels have matured, drift and performance checks,
the retrain sensor with its cooldown, and the promotion gate. Schedules and sensors are evaluated with Dagster's
own APIs (``build_schedule_context``, ``build_sensor_context``, ``evaluate_tick``). Each night is the real
``nightly_pipeline`` from the offline store on: Spark turns the day's feature export into a Delta snapshot, the
champion scores it, Evidently compares it with the champion's reference. Retraining is the real ``retrain`` job:
Spark builds the point-in-time training set, the model is trained, registered and gated in MLflow. Upstream of the
offline store, the churn world stands in for raw data and dbt (it writes their outputs in their contracts)."""

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
from churn_world import FAST_TRAINING, START, ChurnWorld, days

from dagster_project import asset_keys, replay, story
from dagster_project.defs import automation, ml, monitoring, offline_store, scoring
from dagster_project.defs.automation.jobs import RETRAIN_JOB
from dagster_project.defs.automation.schedules import NIGHTLY_SCHEDULE
from dagster_project.defs.automation.sensors import (
    SENSOR_NAME,
    TAG_FAILED_CHECKS,
    TAG_REASON,
    TAG_TRIGGER_PARTITION,
    CheckFailure,
    decide,
    run_key_for,
)
from dagster_project.defs.ml import registry
from dagster_project.defs.monitoring.assets import (
    DRIFT_CHECK,
    PERFORMANCE_CHECK,
)
from dagster_project.defs.scoring import scores as scoring_fns
from dagster_project.problem import load_problem
from dagster_project.resources import ContractResource, MlflowResource, build_resources
from dagster_project.settings import Settings

NO_CHECK_FAILED = "No drift or performance check failed since the last tick"


def _defs(settings: Settings, world: ChurnWorld) -> dg.Definitions:
    """The project's definitions from the offline store on, with the test's resources and the world's contract
    (the default problem's names, the world's own features)."""
    return dg.Definitions.merge(
        *(domain.build_defs(settings) for domain in (offline_store, ml, scoring, monitoring, automation)),
        dg.Definitions(resources={**build_resources(settings), "contract": ContractResource.of(world.contract)}),
    )


def _sensor_retrains(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=RETRAIN_JOB, tags={replay.SENSOR_NAME_TAG: SENSOR_NAME}))
    return list(runs)


def _run_story(
    settings: Settings, world: ChurnWorld, nights: int
) -> tuple[story.StorySummary, dg.Definitions, dg.DagsterInstance]:
    """History up to the first day a model can be trained (snapshots and matured labels, written directly), the
    feature exports of the story's nights, then the story itself from that day."""
    first = story.first_training_day(settings)
    world.write_feature_snapshots(settings.lake_root, days(START, (first - START).days))
    matured = START + dt.timedelta(days=world.horizon)
    world.write_labels(settings.lake_root, days(matured, (first - matured).days))
    nights_ = days(first, nights)
    world.write_feature_exports(settings.lake_root, nights_)
    defs, instance = _defs(settings, world), dg.DagsterInstance.ephemeral()
    store = MlflowResource.from_settings(settings)
    summary = story.run_story(defs, instance, settings, nights_, store, training_config=FAST_TRAINING)
    return summary, defs, instance


@pytest.mark.spark
@pytest.mark.slow
def test_covariate_shift_fails_the_drift_check_and_the_sensor_retrains_once_within_the_cooldown(
    settings: Settings, mlflow_store: MlflowResource, spark: object
) -> None:
    drift_start = story.first_training_day(settings) + dt.timedelta(days=3)
    world = ChurnWorld(drift_start=drift_start)
    summary, defs, instance = _run_story(settings, world, nights=6)  # 3 calm nights, 3 drifted (cooldown: 7)
    records = {r.day: r for r in summary.days}
    assert all(r.success for r in summary.days), [r.error for r in summary.days]

    # The first night has no champion yet: it is trained first (a bootstrap, not a sensor's reaction).
    bootstrap = summary.retrains[0]
    assert (bootstrap.reason, bootstrap.day, bootstrap.version, bootstrap.decision) == (
        "bootstrap",
        summary.first,
        "1",
        "promoted",
    )
    assert not any(r.warm_up for r in summary.days) and all(r.champion for r in summary.days)
    # Calm nights retrain nothing (the sensor's retrains are only the drifted night's below).
    for record in summary.days[:3]:
        assert not record.drift_failed and record.sensor.startswith(NO_CHECK_FAILED) and record.champion == "1"
        assert f"{DRIFT_CHECK}: passed on {record.day}" in record.sensor
    # The first drifted night fails the drift check; the sensor requests exactly one retrain, keyed by that day.
    assert records[drift_start].drift_failed and records[drift_start].drift_share >= 0.3
    assert records[drift_start].sensor == run_key_for(drift_start)
    [run] = _sensor_retrains(instance)
    assert run.tags[replay.RUN_KEY_TAG] == run_key_for(drift_start) and run.tags["kind"] == "retrain"
    assert run.tags[TAG_REASON] == "drift" and run.tags[TAG_TRIGGER_PARTITION] == drift_start.isoformat()
    assert f"monitoring/drift_report:{DRIFT_CHECK}@{drift_start}" in run.tags[TAG_FAILED_CHECKS]
    assert run.tags["retrain/detail"].endswith("; fails at 30%)")
    # The drift persists; the cooldown holds the next nights back and says until when.
    for record in summary.days[4:]:
        assert record.drift_failed and "held back by the cooldown" in record.sensor
        assert f"on or after {drift_start + dt.timedelta(days=7)}" in record.sensor

    # The retrained model went through the promotion gate, which recorded its decision on the new version.
    retrain = summary.retrains[1]
    assert (retrain.reason, retrain.trigger, retrain.success, retrain.version) == (
        "drift",
        drift_start.isoformat(),
        True,
        "2",
    )
    store = MlflowResource.from_settings(settings)
    version = store.client().get_model_version(store.model_name, "2")
    assert version.tags["promotion.decision"] == retrain.decision in {"promoted", "rejected"}
    champion = str(registry.version_by_alias(store, "champion").version)
    assert champion == ("2" if retrain.decision == "promoted" else "1")
    # The next night scores with whatever the gate decided.
    assert records[drift_start + dt.timedelta(days=1)].champion == champion
    assert set(
        scoring_fns.read_scores(settings.lake_root, summary.last, load_problem(settings).contract)["model_version"]
    ) == {champion}

    # A sensor whose cursor was reset sees the old failures again, and still does not retrain twice.
    fresh = replay.tick_sensor(defs, instance, None, run_config={"ops": {"churn_model": {"config": FAST_TRAINING}}})
    assert not fresh.launched and len(_sensor_retrains(instance)) == 1

    text = story.format_summary(summary)
    assert "retrains triggered by the sensor: 1" in text
    assert f"drift detected on 3 days: {drift_start}..{summary.last}" in text


def test_a_failed_performance_check_requests_a_retrain_for_its_day(
    settings: Settings, world_champion: MlflowResource
) -> None:
    """Scores judged on matured labels that contradict them: the sensor asks for a retrain, reason performance."""
    world = ChurnWorld()
    scored = START + dt.timedelta(days=95)
    matured = scored + dt.timedelta(days=load_problem(settings).contract.horizon_days)
    world.write_feature_snapshots(settings.lake_root, [scored])
    defs = dg.Definitions.merge(
        *(domain.build_defs(settings) for domain in (ml, scoring, monitoring, automation)),
        dg.Definitions(
            resources={
                **build_resources(settings),
                "mlflow": world_champion,
                "contract": ContractResource.of(world.contract),
            }
        ),
    )
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("nightly_pipeline")
    assert job.execute_in_process(
        partition_key=scored.isoformat(), instance=instance, asset_selection=[asset_keys.BATCH_SCORES]
    ).success
    labels = world.labels(scored).assign(churned=lambda f: 1 - f["churned"])
    path = Path(settings.lake_root) / "features" / "churn_labels" / f"date={matured}" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    labels.astype({"prediction_time": "datetime64[us]"}).to_parquet(path, index=False)
    result = job.execute_in_process(
        partition_key=matured.isoformat(), instance=instance, asset_selection=[asset_keys.MODEL_PERFORMANCE]
    )
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == PERFORMANCE_CHECK and not check.passed

    tick = replay.tick_sensor(defs, instance, None, launch=False)
    [request] = tick.run_requests
    assert request.tags[TAG_REASON] == "performance"
    assert request.tags[TAG_TRIGGER_PARTITION] == matured.isoformat()
    assert "realized ROC AUC" in request.tags["retrain/detail"]


def _failure(day: dt.date, reason: str = "drift", record_id: int = 1) -> CheckFailure:
    key = dg.AssetCheckKey(asset_keys.DRIFT_REPORT, DRIFT_CHECK)
    return CheckFailure(key, reason, day, record_id, "run", "detail")


@pytest.mark.parametrize(
    ("failing", "last_trigger", "cooldown", "expected", "held"),
    [
        ([1], None, 7, 1, []),  # first failure ever: retrain
        ([3, 5], 1, 7, None, [3, 5]),  # inside the cooldown: held back
        ([8], 1, 7, 8, []),  # the cooldown is over on day 1 + 7
        ([7], 1, 7, None, [7]),
        ([2, 9, 12], 1, 7, 12, [2]),  # several at once: one retrain, for the newest eligible day
        ([1], 1, 0, 1, []),  # no cooldown: same day again is eligible (its run key stops a second run)
        ([0], 1, 0, None, [0]),  # but a day older than the last trigger (a backfill) never retrains
    ],
)
def test_cooldown_counts_partition_days(
    failing: list[int], last_trigger: int | None, cooldown: int, expected: int | None, held: list[int]
) -> None:
    day = lambda n: START + dt.timedelta(days=n)  # noqa: E731
    failures = [_failure(day(n), record_id=i) for i, n in enumerate(failing)]
    trigger, held_back = decide(failures, None if last_trigger is None else day(last_trigger), cooldown)
    assert (None if trigger is None else trigger.partition) == (None if expected is None else day(expected))
    assert [f.partition for f in held_back] == [day(n) for n in held]


@pytest.mark.parametrize(
    ("tick", "partition"),
    [
        (dt.datetime(2025, 4, 2, 2, 0, tzinfo=dt.UTC), "2025-04-01"),
        (dt.datetime(2025, 3, 1, 2, 0, tzinfo=dt.UTC), "2025-02-28"),
        (dt.datetime(2025, 4, 2, 23, 30, tzinfo=dt.UTC), "2025-04-01"),  # a late manual tick: still yesterday
    ],
)
def test_the_nightly_schedule_targets_yesterdays_partition(
    settings: Settings, tick: dt.datetime, partition: str
) -> None:
    defs = _defs(settings, ChurnWorld())
    schedule = defs.resolve_schedule_def(NIGHTLY_SCHEDULE)
    assert schedule.cron_schedule == "0 2 * * *" and schedule.job_name == "nightly_pipeline"
    data = schedule.evaluate_tick(
        dg.build_schedule_context(instance=dg.DagsterInstance.ephemeral(), scheduled_execution_time=tick)
    )
    [request] = data.run_requests
    assert request.partition_key == partition
    dg.validate_run_config(defs.resolve_job_def(schedule.job_name), request.run_config)
    assert replay.tick_time(dt.date.fromisoformat(partition)) == dt.datetime.combine(
        dt.date.fromisoformat(partition) + dt.timedelta(days=1), dt.time(2), tzinfo=dt.UTC
    )


def test_real_definitions_wire_the_nightly_job_the_retrain_job_the_schedule_and_the_sensor() -> None:
    from dagster_project.definitions import defs as load_definitions

    defs = load_definitions()

    nightly = {k.to_user_string() for k in defs.resolve_job_def("nightly_pipeline").asset_layer.executable_asset_keys}
    assert {
        "raw/customers",
        "lake/customer_features",
        "offline_store/feature_snapshots",
        "scoring/batch_scores",
        "serving/online_store",
        "monitoring/drift_report",
        "monitoring/model_performance",
    } <= nightly
    assert not nightly & {"offline_store/training_set", "ml/churn_model", "ml/champion_model"}
    retrain = {k.to_user_string() for k in defs.resolve_job_def(RETRAIN_JOB).asset_layer.executable_asset_keys}
    assert retrain == {"offline_store/training_set", "ml/churn_model", "ml/champion_model"}
    schedule = defs.resolve_schedule_def(NIGHTLY_SCHEDULE)
    assert schedule.job_name == "nightly_pipeline" and schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.job_name == RETRAIN_JOB and sensor.default_status == dg.DefaultSensorStatus.STOPPED
    graph = defs.resolve_asset_graph()
    performance = graph.get(asset_keys.MODEL_PERFORMANCE)
    assert {asset_keys.BATCH_SCORES, dg.AssetKey(["lake", "churn_labels"])} <= set(performance.parent_keys)
    assert dg.AssetKey(["ml", "champion_model"]) in graph.get(asset_keys.BATCH_SCORES).parent_keys
    assert {"scores_are_sane", DRIFT_CHECK, PERFORMANCE_CHECK} <= {k.name for k in graph.asset_check_keys}


def test_the_story_summary_says_what_happened() -> None:
    from dagster_project import story

    day = lambda n: START + dt.timedelta(days=n)  # noqa: E731
    summary = story.StorySummary(
        first=day(0), last=day(9), scenario="price_rise", drift_start=day(6), customers=500, first_training_day=day(3)
    )
    for n in range(10):
        record = story.DayRecord(day=day(n), success=n != 8, warm_up=n < 3, champion=None if n < 3 else "1")
        if n >= 3:
            record.drift_share = 0.5 if n >= 6 else 0.05
            record.drift_failed = n >= 6
            record.drifted_features = "a, b, c, d, e, f, g" if n >= 6 else "none"
        if n == 9:
            record.champion, record.realized_auc, record.realized_version = "2", 0.71, "1"
        record.error = "scoring__batch_scores: boom" if n == 8 else None
        summary.days.append(record)
    summary.retrains = [
        story.Retrain(day(3), "bootstrap", None, True, "1", "promoted", 0.80, None),
        story.Retrain(day(6), "drift", day(6).isoformat(), True, "2", "promoted", 0.79, 0.78),
    ]
    summary.versions = {
        "1": {"validation_auc": 0.8, "decision": "promoted", "champion": False},
        "2": {"validation_auc": 0.79, "decision": "promoted", "champion": True},
    }
    text = story.format_summary(summary)
    assert "9 of 10 nights ran (2025-01-01 to 2025-01-10); scenario price_rise from 2025-01-07" in text
    assert "warm-up (no model yet): 3 nights" in text
    assert "days scored: 7 (2025-01-04..2025-01-10)" in text
    assert "drift detected on 4 days: 2025-01-07..2025-01-10 (peak 50% of features" in text
    assert "a, b, c, d, e and 2 more" in text
    assert "retrains triggered by the sensor: 1" in text
    assert "v2 promoted" in text and "for 2025-01-07" in text
    assert "champions, in turn: v1 (validation AUC 0.800, realized 0.710 over 1 days) -> v2" in text
    assert "FAILED 2025-01-09: scoring__batch_scores: boom" in text
    for record in summary.days:
        record.drift_failed = False
    assert "drift detected on no day" in story.format_summary(summary)
