"""Batch scoring: the pure functions on hand-built frames, and the asset on a real Delta store and MLflow registry."""

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from churn_world import CATEGORICAL, CONTRACT, NUMERIC, START, ChurnWorld, days
from deltalake import DeltaTable

from dagster_project import asset_keys
from dagster_project import lake as lake_layout
from dagster_project.defs.ml.training import FeatureColumns, ModelKind, TrainingParams, build_pipeline
from dagster_project.defs.scoring import scores as scoring
from dagster_project.defs.scoring.assets import SCORES_SANE_CHECK, build_batch_scores
from dagster_project.partitions import daily_partitions
from dagster_project.problem import load_problem
from dagster_project.resources import ContractResource, LakeResource, MlflowResource
from dagster_project.settings import Settings

DAY = START + dt.timedelta(days=70)


@pytest.fixture(scope="module")
def small_model() -> object:
    """A logistic pipeline fitted on a few churn-world days (no MLflow): the scoring functions' model."""
    world = ChurnWorld(customers=300)
    frame = world.training_frame(days(START, 5))
    features = FeatureColumns(numeric=NUMERIC, categorical=CATEGORICAL)
    pipeline = build_pipeline(TrainingParams(model_kind=ModelKind.logistic_regression), features)
    X = frame[features.all].astype({c: "float64" for c in NUMERIC})
    return pipeline.fit(X, frame["churned"])


def _snapshot(customers: int = 50) -> pd.DataFrame:
    return ChurnWorld(customers=customers).features(DAY)


def test_score_snapshot_gives_one_banded_probability_per_customer(small_model: object) -> None:
    features = _snapshot()
    scored_at = dt.datetime(2025, 3, 12, 2, 0, 3, 123456, tzinfo=dt.UTC)
    scores = scoring.score_snapshot(
        small_model,
        features,
        CONTRACT,
        model_name="churn_model",
        model_version="7",
        bands=scoring.RiskBands(medium=0.1, high=0.3),
        scored_at=scored_at,
    )
    assert list(scores.columns) == scoring.scores_schema(CONTRACT).names
    assert scores["customer_id"].tolist() == features["customer_id"].tolist()
    assert set(scores["snapshot_date"]) == {DAY}
    # The probabilities are the model's own, fed the columns it was fitted on (in its order, whatever the frame's).
    shuffled = features[list(reversed(features.columns))]
    X = shuffled[list(small_model.feature_names_in_)].astype({c: "float64" for c in NUMERIC})
    np.testing.assert_allclose(scores["churn_probability"], small_model.predict_proba(X)[:, 1])
    p = scores["churn_probability"]
    expected_band = np.where(p >= 0.3, "high", np.where(p >= 0.1, "medium", "low"))
    assert scores["risk_band"].tolist() == expected_band.tolist()
    assert {"low", "medium", "high"} >= set(scores["risk_band"]) and scores["risk_band"].nunique() >= 2
    assert set(scores["model_version"]) == {"7"} and set(scores["model_name"]) == {"churn_model"}
    assert scores["scored_at"].iloc[0] == pd.Timestamp(scored_at)
    # Scored in batches (memory stays bounded), the result is the same to the last bit.
    batched = scoring.score_snapshot(
        small_model, features, CONTRACT, model_name="churn_model", model_version="7", scored_at=scored_at, batch_rows=7
    )
    pd.testing.assert_frame_equal(
        batched,
        scoring.score_snapshot(
            small_model, features, CONTRACT, model_name="churn_model", model_version="7", scored_at=scored_at
        ),
    )


def test_top_risk_ranks_by_probability_then_customer_and_keeps_ties_exact() -> None:
    features = _snapshot(8)
    p = [0.2, 0.9, 0.5, 0.9, 0.1, 0.5, 0.5, 0.3]
    scores = pd.DataFrame(
        {
            "customer_id": features["customer_id"],
            "snapshot_date": DAY,
            "churn_probability": p,
            "risk_band": "x",
            "model_name": "m",
            "model_version": "1",
        }
    )
    top = scoring.top_risk(scores, features, 4, CONTRACT)
    ids = features["customer_id"].tolist()
    # Two at 0.9, then the first two (by customer id) of the three tied at 0.5.
    assert top["customer_id"].tolist() == [ids[1], ids[3], ids[2], ids[5]]
    assert top["rank"].tolist() == [1, 2, 3, 4]
    assert top["monthly_price"].tolist() == features["monthly_price"].iloc[[1, 3, 2, 5]].tolist()
    with pytest.raises(ValueError, match="row for row"):
        scoring.top_risk(scores, features.iloc[::-1], 4, CONTRACT)


def test_risk_band_edges_and_order() -> None:
    bands = scoring.RiskBands(medium=0.2, high=0.5)
    assert bands.assign(np.array([0.0, 0.19999, 0.2, 0.49, 0.5, 1.0])).tolist() == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]
    with pytest.raises(ValueError, match="medium < high"):
        scoring.RiskBands(medium=0.5, high=0.2)


def test_score_snapshot_refuses_what_it_cannot_score_faithfully(small_model: object) -> None:
    features = _snapshot()
    kwargs = {"model_name": "m", "model_version": "1"}
    with pytest.raises(ValueError, match="duplicated customer_id"):
        scoring.score_snapshot(small_model, pd.concat([features, features.head(2)]), CONTRACT, **kwargs)
    with pytest.raises(KeyError, match="monthly_price"):
        scoring.score_snapshot(small_model, features.drop(columns=["monthly_price"]), CONTRACT, **kwargs)
    other_day = features.assign(snapshot_date=[DAY] * 49 + [DAY + dt.timedelta(days=1)])
    with pytest.raises(ValueError, match="one snapshot day at a time"):
        scoring.score_snapshot(small_model, other_day, CONTRACT, **kwargs)


def test_rescoring_a_day_replaces_exactly_that_day(small_model: object, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    next_day = DAY + dt.timedelta(days=1)
    world = ChurnWorld(customers=40)
    for day in (DAY, next_day):
        scores = scoring.score_snapshot(small_model, world.features(day), CONTRACT, model_name="m", model_version="1")
        written = scoring.write_scores(lake, day, scores, CONTRACT)
        assert written.replaced_rows == 0
    # The day is scored again, by another version and for fewer customers: its 40 rows give way to 25.
    again = scoring.score_snapshot(
        small_model, world.features(DAY).head(25), CONTRACT, model_name="m", model_version="2"
    )
    written = scoring.write_scores(lake, DAY, again, CONTRACT, commit_metadata={"dagster_run_id": "r2"})
    assert written.replaced_rows == 40 and written.table_version == 2

    stored = DeltaTable(str(lake_layout.batch_scores_path(lake))).to_pandas()
    by_day = stored.groupby(pd.to_datetime(stored["snapshot_date"]).dt.date)
    assert by_day.size().to_dict() == {DAY: 25, next_day: 40}
    assert set(by_day.get_group(DAY)["model_version"]) == {"2"}
    assert set(by_day.get_group(next_day)["model_version"]) == {"1"}
    assert len(scoring.read_scores(lake, DAY, CONTRACT)) == 25
    assert scoring.read_scores(lake, DAY + dt.timedelta(days=5), CONTRACT).empty
    # One atomic commit per write, restricted to its partition (Delta's replaceWhere), with our lineage.
    last = DeltaTable(str(lake_layout.batch_scores_path(lake))).history(1)[0]
    assert last["operationParameters"]["predicate"].startswith(f"snapshot_date = '{DAY}'")
    assert '"dagster_run_id": "r2"' in last["userMetadata"]
    with pytest.raises(ValueError, match="must all carry snapshot_date"):
        scoring.write_scores(lake, next_day, again, CONTRACT)


def test_restoring_a_day_puts_back_its_earlier_scores_and_leaves_the_other_days(
    small_model: object, tmp_path: Path
) -> None:
    """What the asset does when the stored copy of a day fails its check: the day as it was before that write."""
    lake = tmp_path / "lake"
    next_day = DAY + dt.timedelta(days=1)
    world = ChurnWorld(customers=30)

    def score(day: dt.date, version: str, customers: int = 30) -> pd.DataFrame:
        features = world.features(day).head(customers)
        return scoring.score_snapshot(small_model, features, CONTRACT, model_name="m", model_version=version)

    first = scoring.write_scores(lake, DAY, score(DAY, "1"), CONTRACT)
    assert first.version_before is None
    scoring.write_scores(lake, next_day, score(next_day, "1"), CONTRACT)
    bad = scoring.write_scores(lake, DAY, score(DAY, "2", customers=10), CONTRACT)
    scoring.restore_day(lake, DAY, bad, CONTRACT)
    restored = scoring.read_scores(lake, DAY, CONTRACT)
    assert len(restored) == 30 and set(restored["model_version"]) == {"1"}
    assert len(scoring.read_scores(lake, next_day, CONTRACT)) == 30
    # A day first written by the failed write is left empty.
    later = next_day + dt.timedelta(days=1)
    scoring.restore_day(lake, later, scoring.write_scores(lake, later, score(later, "2"), CONTRACT), CONTRACT)
    assert scoring.read_scores(lake, later, CONTRACT).empty


def test_score_check_catches_duplicates_nulls_gaps_and_out_of_range() -> None:
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"]})
    good = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "snapshot_date": DAY,
            "churn_probability": [0.1, 0.5, 1.0],
            "risk_band": "low",
            "model_name": "m",
            "model_version": "1",
            "scored_at": pd.Timestamp("2025-01-01", tz="UTC"),
        }
    )
    assert scoring.check_scores(good, customers, CONTRACT).passed
    broken = pd.concat([good, good.tail(1)], ignore_index=True)
    broken.loc[0, "churn_probability"] = 1.2
    broken.loc[1, "risk_band"] = None
    result = scoring.check_scores(broken, pd.DataFrame({"customer_id": ["a", "b", "c", "d"]}), CONTRACT)
    assert not result.passed
    assert (result.duplicated_entities, result.missing_entities, result.null_values, result.out_of_range) == (
        1,
        1,
        1,
        1,
    )


def _materialize(
    settings: Settings, store: MlflowResource, day: dt.date, **config: object
) -> dg.ExecuteInProcessResult:
    problem = load_problem(settings)
    return dg.materialize(
        [build_batch_scores(daily_partitions(settings), problem)],
        partition_key=day.isoformat(),
        resources={
            "lake": LakeResource(root=str(settings.lake_root)),
            "mlflow": store,
            "contract": ContractResource.of(problem.contract),
        },
        run_config={"ops": {"scoring__batch_scores": {"config": config}}} if config else None,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_asset_scores_the_day_with_the_champion_and_exports_the_top_risk(
    settings: Settings, world_champion: MlflowResource
) -> None:
    world = ChurnWorld()
    world.write_feature_snapshots(settings.lake_root, [DAY, DAY + dt.timedelta(days=1)])
    result = _materialize(settings, world_champion, DAY, top_risk_size=20)
    assert result.success
    metadata = result.asset_materializations_for_node("scoring__batch_scores")[0].metadata
    assert metadata["dagster/row_count"].value == world.customers
    assert metadata["model_version"].value == "1"
    bands = sum(metadata[f"{b}_risk_entities"].value for b in ("high", "medium", "low"))
    assert bands == world.customers and metadata["high_risk_entities"].value > 0
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == SCORES_SANE_CHECK and check.passed
    assert check.metadata["scored_rows"].value == world.customers

    stored = scoring.read_scores(settings.lake_root, DAY, CONTRACT)
    assert len(stored) == world.customers and stored["customer_id"].is_unique
    top = pd.read_csv(lake_layout.top_risk_path(settings.lake_root, DAY))
    assert len(top) == 20 and top["rank"].tolist() == list(range(1, 21))
    assert top["churn_probability"].is_monotonic_decreasing
    assert top["churn_probability"].iloc[0] == pytest.approx(stored["churn_probability"].max(), abs=1e-6)
    assert {"plan", "monthly_price", "acquisition_channel"} <= set(top.columns)

    # Materializing the day again replaces its scores (the table gains a version, not rows).
    again = _materialize(settings, world_champion, DAY)
    assert again.success
    metadata = again.asset_materializations_for_node("scoring__batch_scores")[0].metadata
    assert metadata["replaced_rows"].value == world.customers
    assert len(scoring.read_scores(settings.lake_root, DAY, CONTRACT)) == world.customers


def test_asset_without_a_champion_fails_saying_how_to_train_one(
    settings: Settings, mlflow_store: MlflowResource
) -> None:
    ChurnWorld(customers=20).write_feature_snapshots(settings.lake_root, [DAY])
    result = _materialize(settings, mlflow_store, DAY)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.to_string()
    assert "no model version has the alias 'champion'" in message
    assert "materialize ml/churn_model and ml/champion_model" in message


def test_asset_without_the_days_snapshot_fails_naming_it(settings: Settings, world_champion: MlflowResource) -> None:
    ChurnWorld(customers=20).write_feature_snapshots(settings.lake_root, [DAY])
    result = _materialize(settings, world_champion, DAY + dt.timedelta(days=3))
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "materialize offline_store/feature_snapshots" in failure.step_failure_data.error.to_string()
    assert asset_keys.BATCH_SCORES.to_user_string() == "scoring/batch_scores"


def test_scores_that_fail_their_check_are_never_written(settings: Settings, world_champion: MlflowResource) -> None:
    """A snapshot row without its entity key is scored into a score without one: the check fails before the write,
    so the day keeps its earlier scores, no top-risk list is rewritten, and the asset is not materialized."""
    from deltalake import write_deltalake

    world = ChurnWorld(customers=40)
    world.write_feature_snapshots(settings.lake_root, [DAY])
    assert _materialize(settings, world_champion, DAY).success
    table = lake_layout.batch_scores_path(settings.lake_root)
    version = DeltaTable(str(table)).version()
    top_risk = lake_layout.top_risk_path(settings.lake_root, DAY).read_bytes()

    snapshots = DeltaTable(str(Path(settings.lake_root) / "offline_store" / "feature_snapshots"))
    stored = pa.table(snapshots.to_pyarrow_table())
    keyless = stored.slice(0, 1).set_column(0, "customer_id", pa.nulls(1, stored.schema.field("customer_id").type))
    write_deltalake(snapshots.table_uri, keyless, mode="append")

    result = _materialize(settings, world_champion, DAY)
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == SCORES_SANE_CHECK and not check.passed
    assert check.metadata["null_values"].value >= 1 and check.metadata["written"].value is False
    assert not result.asset_materializations_for_node("scoring__batch_scores")
    assert DeltaTable(str(table)).version() == version, "nothing was written"
    assert len(scoring.read_scores(settings.lake_root, DAY, CONTRACT)) == world.customers
    assert lake_layout.top_risk_path(settings.lake_root, DAY).read_bytes() == top_risk


def test_the_challenger_is_scored_in_the_shadow_of_the_champion(
    settings: Settings, tmp_path: Path, mlflow_template_db: Path
) -> None:
    """Batch shadow: once a challenger other than the champion exists, every night also records its probability
    for the same rows, with its version; the champion's scores and bands are untouched. A day scored before the
    challenger existed keeps null shadow columns (the table gained them without a rewrite)."""
    from churn_world import FAST_TRAINING, register_champion

    from dagster_project.defs.ml import registry, tracking
    from dagster_project.defs.ml.training import train_from_training_set

    world = ChurnWorld()
    models = tmp_path / "models"
    store = register_champion(models, mlflow_template_db, world, days(START, 60))
    world.write_feature_snapshots(settings.lake_root, [DAY, DAY + dt.timedelta(days=1)])
    assert _materialize(settings, store, DAY).success  # no challenger to shadow yet: it is the champion

    # A second version, trained on ten more days with fewer iterations and not promoted: the challenger.
    version = world.write_training_set(models / "lake", days(START, 70))
    params = TrainingParams(**{**FAST_TRAINING, "max_iter": 20})
    trained = train_from_training_set(
        str(lake_layout.offline_store(models / "lake").training_set), CONTRACT, version, params
    )
    tracking.log_and_register(trained, store, dagster_run_id="shadow-test")
    challenger = registry.load_challenger(store, champion_version="1")
    assert challenger is not None and challenger.version == "2"

    later = DAY + dt.timedelta(days=1)
    result = _materialize(settings, store, later)
    assert result.success
    metadata = result.asset_materializations_for_node("scoring__batch_scores")[0].metadata
    assert metadata["model_version"].value == "1" and metadata["shadow_challenger_version"].value == "2"

    stored = scoring.read_scores(settings.lake_root, later, CONTRACT).sort_values("customer_id")
    assert (stored["model_version"] == "1").all() and (stored[scoring.CHALLENGER_VERSION] == "2").all()
    snapshot = scoring.read_feature_snapshot(settings.lake_root, later, CONTRACT).sort_values("customer_id")
    expected = challenger.churn_probability(snapshot)
    np.testing.assert_allclose(stored[scoring.CHALLENGER_PROBABILITY].to_numpy(), expected, rtol=0, atol=1e-12)
    assert not np.allclose(stored[scoring.CHALLENGER_PROBABILITY], stored["churn_probability"]), "two models"

    earlier = scoring.read_scores(settings.lake_root, DAY, CONTRACT)
    assert len(earlier) == world.customers and earlier[scoring.CHALLENGER_PROBABILITY].isna().all()
