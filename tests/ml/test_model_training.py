"""Training without Dagster or MLflow: the time split, the pipeline, reproducibility, safe serialization."""

import datetime as dt
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from synthetic_churn import FAST, synthetic_contract, synthetic_training_set, write_training_set
from threadpoolctl import threadpool_limits

from dagster_project.defs.ml import importance
from dagster_project.defs.ml.registry import decide_promotion
from dagster_project.defs.ml.serialization import (
    ALLOWED_UNTRUSTED_TYPES,
    UntrustedModelTypesError,
    trusted_types_for,
)
from dagster_project.defs.ml.training import (
    ModelKind,
    TrainingParams,
    TrainingResult,
    declared_features,
    evaluate,
    load_training_set,
    model_input,
    recall_at_top_fraction,
    time_split,
    train_from_training_set,
)
from dagster_project.settings import Settings
from spark_jobs.contract import DBT_MODEL_CHECKSUM

CONTRACT = synthetic_contract()
LABEL = CONTRACT.label


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[ModelKind, TrainingResult]:
    """One model of each kind on the synthetic training set, shared by the tests that only inspect them."""
    path = tmp_path_factory.mktemp("lake") / "offline_store" / "training_set"
    write_training_set(path, synthetic_training_set())
    return {
        kind: train_from_training_set(str(path), CONTRACT, 0, TrainingParams(**FAST, model_kind=kind))
        for kind in ModelKind
    }


def test_split_is_by_time_with_a_label_horizon_gap(training_set: tuple[Path, int]) -> None:
    frame = load_training_set(str(training_set[0]), CONTRACT).frame
    split = time_split(frame, validation_days=14, churn_horizon_days=30, contract=CONTRACT)

    last = max(frame["feature_snapshot_date"])
    assert split.validation_end == last
    assert split.validation_start == last - dt.timedelta(days=13)
    assert min(split.validation["feature_snapshot_date"]) >= split.validation_start
    # Every training label window closes before the first validation day starts: no label sees validation time.
    label_ends = split.train["prediction_time"] + pd.Timedelta(days=30)
    assert label_ends.max() <= pd.Timestamp(split.validation_start)
    # ... and the rows just before the validation period are used for neither (the gap).
    assert split.gap_rows > 0
    assert len(split.train) + len(split.validation) + split.gap_rows == len(frame)
    assert max(split.train["feature_snapshot_date"]) < split.validation_start - dt.timedelta(days=29)


def test_split_refuses_a_training_set_too_short_for_the_horizon(settings: Settings) -> None:
    frame = synthetic_training_set(customers=30, snapshots=12, every_days=3)  # 33 days
    with pytest.raises(ValueError, match="no training rows"):
        time_split(frame, validation_days=14, churn_horizon_days=30, contract=CONTRACT)


def test_model_learns_and_retraining_the_same_lineage_reproduces_metrics_exactly(
    trained: dict[ModelKind, TrainingResult],
) -> None:
    first = trained[ModelKind.hist_gradient_boosting]
    # The same table version and parameters, read and trained afresh.
    again = train_from_training_set(first.training_set.path, CONTRACT, first.training_set.version, first.params)

    assert first.metrics["roc_auc"] > 0.75, first.metrics
    assert set(first.metrics) == {"roc_auc", "pr_auc", "log_loss", "brier", "recall_top_decile"}
    assert first.metrics == again.metrics  # exact, not approximate
    assert first.training_data_hash == again.training_data_hash
    np.testing.assert_array_equal(first.validation_scores, again.validation_scores)
    # The default is the booster; its preprocessing lives inside the pipeline.
    assert isinstance(first.pipeline, Pipeline)
    assert isinstance(first.pipeline.named_steps["model"], HistGradientBoostingClassifier)


def test_the_model_does_not_depend_on_the_thread_count(trained: dict[ModelKind, TrainingResult]) -> None:
    first = trained[ModelKind.hist_gradient_boosting]
    with threadpool_limits(limits=2, user_api="openmp"):  # the suite runs on one thread (see conftest)
        two_threads = train_from_training_set(
            first.training_set.path, CONTRACT, first.training_set.version, first.params
        )
    assert two_threads.metrics == first.metrics


def test_logistic_baseline_is_selectable(trained: dict[ModelKind, TrainingResult]) -> None:
    result = trained[ModelKind.logistic_regression]
    assert isinstance(result.pipeline.named_steps["model"], LogisticRegression)
    assert result.metrics["roc_auc"] > 0.75


@pytest.mark.parametrize("kind", list(ModelKind))
def test_permutation_importances_are_scikit_learns_to_the_bit(
    trained: dict[ModelKind, TrainingResult], kind: ModelKind
) -> None:
    """The trees' shortcut (only the trees that split on the shuffled column are walked again) gives exactly what
    scikit-learn's ``permutation_importance`` gives, categories and missing values included; the logistic
    baseline goes through scikit-learn itself."""
    result = trained[kind]
    validation = result.split.validation.copy()
    validation.loc[validation.index[::7], result.features.numeric[0]] = np.nan  # the trees' missing side, in both
    result = replace(result, split=replace(result.split, validation=validation))
    found = importance.permutation_importances(result)

    X, y, params = result.X_validation, result.y_validation, result.params
    rows = np.sort(np.random.default_rng(params.seed).choice(len(X), size=params.importance_sample_rows, replace=False))
    sample = X.iloc[rows]
    repeats, seed = params.importance_repeats, params.seed
    expected = permutation_importance(
        result.pipeline, sample, y[rows], scoring="roc_auc", n_repeats=repeats, random_state=seed
    )
    by_feature = found.set_index("feature").loc[list(X.columns)]
    assert by_feature["importance_mean"].tolist() == expected.importances_mean.tolist()
    assert by_feature["importance_std"].tolist() == expected.importances_std.tolist()
    fast = importance._EncodedTrees.of(result.pipeline, sample)
    assert (fast is not None) == (kind is ModelKind.hist_gradient_boosting)
    if fast is not None:  # the shortcut skips work: most trees leave out most columns
        assert min(sum(c in used for used in fast.splits_on) for c in fast.columns) < len(fast.splits_on)


def test_shuffled_training_labels_learn_nothing(training_set: tuple[Path, int], fast_params: TrainingParams) -> None:
    params = fast_params.model_copy(update={"shuffle_train_labels": True})
    result = train_from_training_set(str(training_set[0]), CONTRACT, None, params)
    assert result.metrics["roc_auc"] < 0.6
    # Only the training labels were permuted: validation keeps the true ones.
    assert result.split.validation[LABEL].sum() > 0


def test_features_and_their_kinds_come_from_the_contract(settings: Settings, fast_params: TrainingParams) -> None:
    frame = synthetic_training_set().assign(
        days_since_last_login=lambda f: f["logins_30d"] % 7,
        loyalty_tier=lambda f: np.where(f["logins_30d"] > 8, "a", "b"),
    )
    path = Path(settings.lake_root) / "offline_store" / "training_set"
    write_training_set(path, frame)
    contract = synthetic_contract(numeric=("days_since_last_login",), categorical=("loyalty_tier",))
    result = train_from_training_set(str(path), contract, None, fast_params)
    assert "days_since_last_login" in result.features.numeric
    assert "loyalty_tier" in result.features.categorical
    assert {"customer_id", "prediction_time", LABEL, "feature_snapshot_date"}.isdisjoint(result.features.all)
    assert list(result.pipeline.feature_names_in_) == result.features.all


def test_pipeline_copes_with_unseen_categories_missing_values_and_integer_inputs(
    trained: dict[ModelKind, TrainingResult],
) -> None:
    for result in trained.values():
        rows = result.split.validation.head(6).copy()
        rows.loc[rows.index[0], "plan"] = "enterprise"  # never seen in training
        rows.loc[rows.index[1], "region"] = None
        rows.loc[rows.index[2], "minutes_active_30d"] = np.nan
        rows["logins_30d"] = rows["logins_30d"].astype("int64")  # as a snapshot would carry a count
        probabilities = result.pipeline.predict_proba(model_input(rows, result.pipeline))[:, 1]
        assert np.all((probabilities > 0) & (probabilities < 1))


def test_training_set_version_and_lineage_come_from_the_delta_commit(settings: Settings) -> None:
    path = Path(settings.lake_root) / "offline_store" / "training_set"
    frame = synthetic_training_set(customers=20, snapshots=5)
    write_training_set(path, frame, feature_store_version=3, dagster_run_id="r1", **{DBT_MODEL_CHECKSUM: "abc123"})
    # A commit naming its lineage under any other key (as the offline store once did) is not read as a guess.
    write_training_set(path, frame.head(50), feature_store_version=4, dagster_run_id="r2", dbt_manifest_hash="m1")
    old, new = load_training_set(str(path), CONTRACT, 0), load_training_set(str(path), CONTRACT)
    assert (old.version, old.feature_store_version, old.dagster_run_id, old.dbt_model_checksum) == (
        0,
        "3",
        "r1",
        "abc123",
    )
    assert (new.version, new.feature_store_version, new.dbt_model_checksum, len(new.frame)) == (1, "4", None, 50)


def test_a_training_set_with_unlabelled_rows_is_refused(settings: Settings) -> None:
    path = Path(settings.lake_root) / "offline_store" / "training_set"
    frame = synthetic_training_set(customers=5, snapshots=2).astype({LABEL: "Int64"})
    frame.loc[3, LABEL] = pd.NA
    write_training_set(path, frame)
    with pytest.raises(ValueError, match="1 rows without a label"):
        load_training_set(str(path), CONTRACT)


def test_declared_features_reject_a_type_the_pipeline_cannot_encode() -> None:
    frame = synthetic_training_set(customers=5, snapshots=2).assign(last_seen=pd.Timestamp("2025-01-01"))
    with pytest.raises(TypeError, match="last_seen"):
        declared_features(synthetic_contract(numeric=("last_seen",)), frame)


def test_metrics_on_a_known_example() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.1, 0.1, 0.2, 0.05])
    metrics = evaluate(y, scores)
    assert metrics["recall_top_decile"] == pytest.approx(1 / 3)  # top 1 of 10 rows holds 1 of 3 churners
    assert recall_at_top_fraction(y, scores, 0.3) == pytest.approx(2 / 3)
    assert 0 < metrics["brier"] < 1 and 0 < metrics["roc_auc"] < 1


def test_skops_trusts_exactly_the_reviewed_types(trained: dict[ModelKind, TrainingResult]) -> None:
    for kind, result in trained.items():
        trusted = trusted_types_for(result.pipeline)
        assert set(trusted) <= set(ALLOWED_UNTRUSTED_TYPES)
        dumped = skops.io.dumps(result.pipeline)
        if kind is ModelKind.hist_gradient_boosting:
            assert "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor" in trusted
            # skops refuses the booster unless its types are trusted, and loads it when they are.
            with pytest.raises(skops.io.exceptions.UntrustedTypesFoundException):
                skops.io.loads(dumped)
        skops.io.loads(dumped, trusted=trusted)


def _custom_step(X: np.ndarray) -> np.ndarray:
    return X


def test_a_model_with_an_unreviewed_type_is_refused() -> None:
    pipeline = Pipeline([("custom", FunctionTransformer(_custom_step)), ("model", LogisticRegression())])
    pipeline.fit(np.arange(20, dtype=float).reshape(10, 2), np.array([0, 1] * 5))
    with pytest.raises(UntrustedModelTypesError, match="_custom_step"):
        trusted_types_for(pipeline)


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [
        (0.80, None, True),  # first model clears the floor
        (0.65, None, False),  # first model below the floor
        (0.79, 0.795, True),  # within the tolerance
        (0.78, 0.80, False),  # worse than the champion by more than the tolerance
        (0.69, 0.60, False),  # better than a weak champion, still below the floor
        (float("nan"), None, False),
    ],
)
def test_promotion_rule(challenger: float, champion: float | None, promote: bool) -> None:
    decided, reason = decide_promotion(challenger, champion, auc_floor=0.7, tolerance=0.01)
    assert decided is promote, reason
