"""Drift reports (Evidently 0.7) and realized performance: the functions on the churn world, and the assets with
their checks on a real Delta store and MLflow registry."""

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from churn_world import CATEGORICAL, CONTRACT, FEATURES, NUMERIC, START, ChurnWorld
from sklearn.metrics import roc_auc_score

from dagster_project import lake as lake_layout
from dagster_project.defs.ml.training import FeatureColumns
from dagster_project.defs.monitoring import drift as drifts
from dagster_project.defs.monitoring import performance as perf
from dagster_project.defs.monitoring.assets import (
    DRIFT_CHECK,
    PERFORMANCE_CHECK,
    build_drift_report,
    build_model_performance,
)
from dagster_project.defs.scoring import scores as scoring
from dagster_project.defs.scoring.assets import build_batch_scores
from dagster_project.partitions import daily_partitions, label_horizon_mapping
from dagster_project.problem import load_problem
from dagster_project.resources import MlflowResource, build_resources
from dagster_project.settings import Settings

CALM = START + dt.timedelta(days=70)
DRIFT_START = START + dt.timedelta(days=80)
DRIFTED = DRIFT_START + dt.timedelta(days=2)
# The world's features with the kinds the model encodes them as: what drift compares, and how.
TYPES = FeatureColumns(numeric=NUMERIC, categorical=CATEGORICAL)
SHIFTED = {"monthly_price", "logins_30d", "minutes_active_30d", "support_tickets_30d", "acquisition_channel"}


def _with_prediction(frame: pd.DataFrame, rng_seed: int = 0) -> pd.DataFrame:
    # A stand-in prediction that follows the features, so that it drifts when they do.
    score = 1 / (1 + (frame["logins_30d"] + 1) / (frame["support_tickets_30d"] + 1))
    return frame.assign(prediction=score.astype("float64"))


def test_drift_finds_the_shifted_features_and_not_the_others() -> None:
    world = ChurnWorld(drift_start=DRIFT_START)
    reference = _with_prediction(world.features(START + dt.timedelta(days=10)))
    calm = drifts.compute_drift(reference, _with_prediction(world.features(CALM)), TYPES, drift_share=0.3)
    assert calm.drifted_features == [] and calm.share_of_drifted_features == 0.0
    assert not calm.dataset_drift and not calm.prediction.drifted
    assert set(calm.drift_scores) == set(FEATURES) and all(0 <= s < 0.1 for s in calm.drift_scores.values())

    shifted = drifts.compute_drift(reference, _with_prediction(world.features(DRIFTED)), TYPES, drift_share=0.3)
    assert set(shifted.drifted_features) == SHIFTED
    assert shifted.share_of_drifted_features == pytest.approx(len(SHIFTED) / len(FEATURES))
    assert shifted.dataset_drift and shifted.prediction.drifted
    # Sorted by drift score, highest first; methods fixed whatever the sizes.
    scores = [shifted.features[c].score for c in shifted.drifted_features]
    assert scores == sorted(scores, reverse=True)
    assert {c.method for c in shifted.features.values()} == {"wasserstein", "jensenshannon"}
    assert not drifts.compute_drift(
        reference, _with_prediction(world.features(DRIFTED)), TYPES, drift_share=0.5
    ).dataset_drift


def test_a_drifted_key_feature_fails_the_check_below_the_share_threshold() -> None:
    world = ChurnWorld(drift_start=DRIFT_START)
    reference = _with_prediction(world.features(START + dt.timedelta(days=10)))
    drifted = _with_prediction(world.features(DRIFTED))
    calm = _with_prediction(world.features(CALM))
    unshifted = sorted(set(FEATURES) - SHIFTED)[:3]

    # Five of the features shifted: under a share threshold of 50% only a key feature among them fails the check.
    leaning = drifts.compute_drift(
        reference, drifted, TYPES, drift_share=0.5, key_features=["monthly_price", *unshifted, "not_a_feature"]
    )
    assert not leaning.dataset_drift and leaning.failed
    assert leaning.key_features == ["monthly_price", *unshifted]  # a name the model lacks is ignored
    assert leaning.drifted_key_features == ["monthly_price"]
    elsewhere = drifts.compute_drift(reference, drifted, TYPES, drift_share=0.5, key_features=unshifted)
    # A key feature fails the check at a higher bar than a column drifts at: noise in one feature is not enough.
    strict = drifts.compute_drift(
        reference,
        drifted,
        TYPES,
        drift_share=0.5,
        key_features=["monthly_price"],
        key_feature_threshold=leaning.features["monthly_price"].score + 0.01,
    )
    assert "monthly_price" in strict.drifted_features and not strict.failed
    assert not elsewhere.failed and elsewhere.drifted_key_features == []
    assert not drifts.compute_drift(reference, calm, TYPES, drift_share=0.5, key_features=["monthly_price"]).failed
    # The share rule still fails on its own.
    assert drifts.compute_drift(reference, drifted, TYPES, drift_share=0.3, key_features=unshifted).failed


def test_sampling_the_day_keeps_the_verdicts_and_the_report_says_so(tmp_path: Path) -> None:
    world = ChurnWorld(customers=3000, drift_start=DRIFT_START)
    reference = _with_prediction(world.features(START))
    current = _with_prediction(world.features(DRIFTED))
    full = drifts.compute_drift(reference, current, TYPES, drift_share=0.3, max_current_rows=None)
    sampled = drifts.compute_drift(reference, current, TYPES, drift_share=0.3, max_current_rows=1500, seed=1)
    assert not full.sampled and full.current_rows_compared == 3000
    assert sampled.sampled and sampled.current_rows_compared == 1500 and sampled.current_rows == 3000
    assert sampled.drifted_features == full.drifted_features
    for column in FEATURES:
        # 1,500 sampled rows move a distance by a few hundredths; a drifted column sits at 0.2 and more.
        assert sampled.features[column].score == pytest.approx(full.features[column].score, abs=0.06)

    path = drifts.save_report(
        sampled, tmp_path / "r" / "report.html", "Data drift on day X", drifts.report_notes(sampled, "the reference")
    )
    page = path.read_text()
    assert "1,500 rows sampled at random (seeded) from the day&#x27;s 3,000 scored customers" in page
    assert "Data drift on day X" in page and "root_metric_" in page  # the banner above Evidently's own report
    assert not list(path.parent.glob(".*.tmp"))


def test_the_scores_are_evidentlys_own_value_drift_with_missing_and_infinite_values() -> None:
    """The columns' scores and verdicts equal those of a report of Evidently's ``ValueDrift`` metrics, the metric the
    check was first built on, to the bit: the same test on the same cleaned values."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    world = ChurnWorld(customers=2000, drift_start=DRIFT_START)
    reference = _with_prediction(world.features(START + dt.timedelta(days=10)))
    current = _with_prediction(world.features(DRIFTED)).reset_index(drop=True)
    current.loc[:40, NUMERIC[0]] = np.nan
    current[NUMERIC[1]] = current[NUMERIC[1]].astype("float64")
    current.loc[41:60, NUMERIC[1]] = np.inf
    current.loc[:30, CATEGORICAL[0]] = None
    result = drifts.compute_drift(reference, current, TYPES, drift_share=0.3)

    numeric = [*NUMERIC, "prediction"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=list(CATEGORICAL))
    metrics = [
        ValueDrift(column=c, method=drifts.NUM_METHOD if c in numeric else drifts.CAT_METHOD, threshold=0.1)
        for c in [*FEATURES, "prediction"]
    ]
    snapshot = Report(metrics, include_tests=True).run(
        Dataset.from_pandas(drifts._prepare(current, TYPES), data_definition=definition),
        Dataset.from_pandas(drifts._prepare(reference, TYPES), data_definition=definition),
    )
    evidently = snapshot.dict()
    scores = {m["config"]["column"]: float(m["value"]) for m in evidently["metrics"]}
    verdicts = {t["metric_config"]["params"]["column"]: t["status"] == "FAIL" for t in evidently["tests"]}
    ours = {**result.features, "prediction": result.prediction}
    assert {c: d.score for c, d in ours.items()} == scores
    assert {c: d.drifted for c, d in ours.items()} == verdicts
    assert set(result.drifted_features) == SHIFTED


def test_the_report_draws_the_prediction_the_drifted_and_the_key_features(tmp_path: Path) -> None:
    world = ChurnWorld(customers=1500, drift_start=DRIFT_START)
    reference = _with_prediction(world.features(START + dt.timedelta(days=10)))
    calm_key = sorted(set(FEATURES) - SHIFTED)[0]
    result = drifts.compute_drift(
        reference, _with_prediction(world.features(DRIFTED)), TYPES, drift_share=0.3, key_features=[calm_key]
    )
    assert drifts.report_columns(result) == ["prediction", *result.drifted_features, calm_key]
    page = drifts.save_report(result, tmp_path / "report.html", "Data drift", drifts.report_notes(result, "ref"))
    text = page.read_text()
    for feature in FEATURES:  # every feature in the table, drifted or not
        assert f"<td>{feature}{' (key)' if feature == calm_key else ''}</td>" in text
    for feature in drifts.report_columns(result):  # a card each (its title is in the page's widget data)
        assert f"Drift in column '{feature}'" in text
    quiet = sorted(set(FEATURES) - SHIFTED - {calm_key})
    assert quiet and all(f"Drift in column '{feature}'" not in text for feature in quiet)
    # Each card plots the distributions, not the day's values against their row index (which orders nothing).
    assert text.count('"title": "DATA DISTRIBUTION"') == len(drifts.report_columns(result))
    assert '"title": "DATA DRIFT"' not in text


def test_drift_refuses_inputs_without_the_columns() -> None:
    frame = _with_prediction(ChurnWorld(customers=30).features(CALM))
    with pytest.raises(KeyError, match="prediction"):
        drifts.compute_drift(frame, frame.drop(columns=["prediction"]), TYPES, drift_share=0.3)


def test_realized_performance_joins_matured_labels_and_refuses_noise() -> None:
    world = ChurnWorld(customers=800)
    labels = world.labels(CALM)
    scores = pd.DataFrame(
        {
            "customer_id": labels["customer_id"],
            "churn_probability": labels["churned"] * 0.5 + 0.25,
            "model_name": "m",
            "model_version": "3",
        }
    )
    result = perf.realized_performance(
        scores,
        labels[["customer_id", "churned"]],
        CONTRACT,
        evaluated_on=CALM + dt.timedelta(days=30),
        scored_date=CALM,
    )
    assert result.evaluated and result.realized_roc_auc == 1.0 and result.label_coverage == 1.0
    assert result.positives == int(labels["churned"].sum()) and result.model_version == "3"
    assert result.roc_auc_standard_error is not None and 0 <= result.roc_auc_standard_error < 0.05

    few = labels.head(30)[["customer_id", "churned"]]
    assert not perf.realized_performance(scores, few, CONTRACT, evaluated_on=CALM, scored_date=CALM).evaluated
    nothing = perf.realized_performance(scores.head(0), few, CONTRACT, evaluated_on=CALM, scored_date=CALM)
    assert not nothing.evaluated and "no scores" in nothing.reason
    assert perf.within_tolerance(0.76, 0.80, 0.05) and not perf.within_tolerance(0.74, 0.80, 0.05)


def test_realized_performance_compares_the_shadowed_challenger_on_the_same_rows() -> None:
    """With batch shadow scores, the day's performance also gives the challenger's AUC on the same labelled rows, and
    the difference with DeLong's standard error; rows the challenger did not score are left out of the comparison."""
    world = ChurnWorld(customers=2000)
    labels = world.labels(CALM)
    rng = np.random.default_rng(3)
    y = labels["churned"].to_numpy()
    scores = pd.DataFrame(
        {
            "customer_id": labels["customer_id"],
            "churn_probability": 1 / (1 + np.exp(-(y + rng.normal(0, 1.5, len(y))))),
            "model_name": "m",
            "model_version": "3",
            "challenger_probability": 1 / (1 + np.exp(-(y + rng.normal(0, 0.7, len(y))))),
            "challenger_version": "4",
        }
    )
    scores.loc[:9, ["challenger_probability", "challenger_version"]] = None
    result = perf.realized_performance(
        scores, labels[["customer_id", "churned"]], CONTRACT, evaluated_on=CALM, scored_date=CALM
    )
    assert result.challenger_version == "4"
    shadowed = scores.iloc[10:]
    assert result.challenger_roc_auc == pytest.approx(roc_auc_score(y[10:], shadowed["challenger_probability"]))
    assert result.roc_auc_difference == pytest.approx(
        result.challenger_roc_auc - roc_auc_score(y[10:], shadowed["churn_probability"])
    )
    assert result.roc_auc_difference > 0 and result.roc_auc_difference_p_value < 0.01
    assert 0 < result.roc_auc_difference_standard_error < 0.05
    stored = perf.performance_table(result).to_pylist()[0]
    assert stored["challenger_version"] == "4" and stored["roc_auc_difference"] == result.roc_auc_difference

    unshadowed = perf.realized_performance(
        scores.drop(columns=["challenger_probability", "challenger_version"]),
        labels[["customer_id", "churned"]],
        CONTRACT,
        evaluated_on=CALM,
        scored_date=CALM,
    )
    assert unshadowed.challenger_version is None and unshadowed.challenger_roc_auc is None


def _performance(settings: Settings) -> dg.AssetsDefinition:
    problem = load_problem(settings)
    return build_model_performance(daily_partitions(settings), label_horizon_mapping(problem.contract), problem)


def _resources(settings: Settings, store: MlflowResource) -> dict[str, object]:
    return {**build_resources(settings), "mlflow": store}


def _metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, dg.MetadataValue]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return event.materialization.metadata


def _run(
    assets: list[dg.AssetsDefinition],
    day: dt.date,
    settings: Settings,
    store: MlflowResource,
    instance: dg.DagsterInstance,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        partition_key=day.isoformat(),
        resources=_resources(settings, store),
        instance=instance,
        raise_on_error=False,
    )


def test_drift_report_asset_passes_a_calm_day_and_fails_a_shifted_one(
    settings: Settings, world_champion: MlflowResource
) -> None:
    world = ChurnWorld(drift_start=DRIFT_START)
    world.write_feature_snapshots(settings.lake_root, [CALM, DRIFTED])
    instance = dg.DagsterInstance.ephemeral()
    verdicts = {}
    for day in (CALM, DRIFTED):
        result = _run(
            [
                build_batch_scores(daily_partitions(settings), load_problem(settings)),
                build_drift_report(daily_partitions(settings)),
            ],
            day,
            settings,
            world_champion,
            instance,
        )
        assert result.success  # a failed check is a verdict, not a run failure
        [drift] = [e for e in result.get_asset_check_evaluations() if e.check_name == DRIFT_CHECK]
        assert drift.severity == dg.AssetCheckSeverity.ERROR
        assert drift.metadata["partition"].value == day.isoformat()
        verdicts[day] = drift
        metadata = _metadata(result, "monitoring/drift_report")
        path = Path(metadata["report_path"].value)
        assert path == lake_layout.drift_report_path(settings.lake_root, day) and path.stat().st_size > 100_000
        assert metadata["report"].value == path.resolve().as_uri()
        # Every feature's score is its own numeric entry, so the UI plots each over days.
        assert {f"drift_score/{f}" for f in FEATURES} <= set(metadata)
        assert metadata["current_rows"].value == world.customers
        # The champion's most important features (its logged permutation importances) are watched one by one.
        key_features = metadata["key_features"].value.split(", ")
        assert 1 <= len(key_features) <= settings.thresholds.drift_key_features
        assert set(key_features) <= set(FEATURES)
    assert verdicts[CALM].passed and not verdicts[DRIFTED].passed
    assert verdicts[DRIFTED].metadata["share_of_drifted_features"].value >= 0.3
    assert set(verdicts[DRIFTED].metadata["drifted_features"].value.split(", ")) == SHIFTED


def test_drift_report_needs_the_days_scores(settings: Settings, world_champion: MlflowResource) -> None:
    result = _run(
        [build_drift_report(daily_partitions(settings))], CALM, settings, world_champion, dg.DagsterInstance.ephemeral()
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "materialize scoring/batch_scores" in failure.step_failure_data.error.to_string()


def test_model_performance_judges_matured_scores_and_skips_the_rest(
    settings: Settings, world_champion: MlflowResource
) -> None:
    world = ChurnWorld()
    horizon = load_problem(settings).contract.horizon_days
    matured_on = CALM + dt.timedelta(days=horizon)
    world.write_feature_snapshots(settings.lake_root, [CALM])
    instance = dg.DagsterInstance.ephemeral()
    scores_asset = build_batch_scores(daily_partitions(settings), load_problem(settings))
    assert _run([scores_asset], CALM, settings, world_champion, instance).success

    # Before the labels mature: materialized, not evaluated, and the check is skipped rather than faked.
    early = _run([_performance(settings)], matured_on, settings, world_champion, instance)
    assert early.success and not early.get_asset_check_evaluations()
    metadata = _metadata(early, "monitoring/model_performance")
    assert metadata["evaluated"].value is False and "no matured labels" in metadata["reason"].value

    world.write_labels(settings.lake_root, [matured_on])
    result = _run([_performance(settings)], matured_on, settings, world_champion, instance)
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == PERFORMANCE_CHECK and check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    stored = scoring.read_scores(settings.lake_root, CALM, CONTRACT)
    labels = world.labels(CALM)
    expected = roc_auc_score(labels["churned"], labels[["customer_id"]].merge(stored)["churn_probability"])
    assert check.metadata["realized_roc_auc"].value == pytest.approx(expected, abs=1e-6)
    assert check.metadata["scored_date"].value == CALM.isoformat()
    # Why it passed: both AUCs with their standard errors (the champion recorded its validation counts), z, p-value
    # and the rule in force.
    meta = {k: v.value for k, v in check.metadata.items()}
    assert meta["validation_positives"] > 0 and meta["validation_negatives"] > 0
    assert meta["validation_standard_error"] == pytest.approx(
        perf.hanley_mcneil_se(meta["validation_roc_auc"], meta["validation_positives"], meta["validation_negatives"]),
        abs=1e-6,
    )
    se = (meta["roc_auc_standard_error"] ** 2 + meta["validation_standard_error"] ** 2) ** 0.5
    assert meta["z"] == pytest.approx((meta["validation_roc_auc"] - meta["realized_roc_auc"]) / se, abs=1e-3)
    assert meta["significance_level"] == settings.thresholds.performance_significance_level
    assert meta["tolerance"] == settings.thresholds.performance_tolerance and 0 < meta["p_value"] <= 1
    assert "p <" in meta["rule"] and "validation AUC" in meta["rule"]
    table = pd.read_parquet(
        Path(settings.lake_root) / "monitoring" / "model_performance" / f"date={matured_on}" / "part-0.parquet"
    )
    assert table["realized_roc_auc"].iloc[0] == pytest.approx(expected, abs=1e-6)

    # Labels that contradict the scores: the realized AUC collapses and the check fails.
    flipped = labels.assign(churned=1 - labels["churned"])
    flipped_path = Path(settings.lake_root) / "features" / "churn_labels" / f"date={matured_on}" / "part-0.parquet"
    flipped.astype({"prediction_time": "datetime64[us]"}).to_parquet(flipped_path, index=False)
    failed = _run([_performance(settings)], matured_on, settings, world_champion, instance)
    [check] = failed.get_asset_check_evaluations()
    assert not check.passed and check.metadata["realized_roc_auc"].value < 0.5
    assert check.metadata["p_value"].value < settings.thresholds.performance_significance_level
    assert "significant" in check.description
