"""The predictor without HTTP: the compiled fast path equals scikit-learn's to the bit, the variants, and the
prediction log's writer keeping every row through failed flushes. The session's churn-world champion, read only."""

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from churn_world import CONTRACT, START, ChurnWorld

from dagster_project.defs.ml.registry import load_version
from dagster_project.defs.ml.training import (
    ModelKind,
    TrainingParams,
    build_pipeline,
    churn_probability,
    declared_features,
    model_input,
)
from dagster_project.defs.scoring.scores import RiskBands
from dagster_project.defs.serving.compiled import MAX_ARRAY_ROWS, MAX_ROWS, compile_model
from dagster_project.defs.serving.prediction_log import GatheredRows, PredictionLogWriter, read_prediction_log
from dagster_project.defs.serving.predictor import (
    EncodedRows,
    LoadedModels,
    ModelSlot,
    Predictor,
    ServingPolicy,
    UnknownEntitiesError,
    assign_variant,
)
from dagster_project.online_store import SqliteOnlineStore
from dagster_project.resources import MlflowResource

DAY = START + dt.timedelta(days=80)
FEATURES = [f.name for f in CONTRACT.features]


@pytest.fixture(scope="module")
def champion_model(world_champion: MlflowResource):
    return load_version(world_champion, "1")


def test_the_compiled_path_equals_scikit_learn_to_the_bit(champion_model) -> None:
    compiled = compile_model(champion_model)
    assert compiled is not None, "the platform's gradient-boosting pipeline must get its fast path"
    frame = ChurnWorld(drift_start=START).features(DAY)  # drifted: a new acquisition channel, unseen in training
    rows = frame[FEATURES].astype(object).to_dict("records")
    for i in range(0, 40, 3):  # missing values and unknown categories, as a request-time override brings them
        rows[i] = {**rows[i], "logins_30d": None, "plan": None, "region": "atlantis"}
    expected = churn_probability(champion_model, model_input(pd.DataFrame(rows), champion_model))
    assert np.array_equal(compiled.walked(rows), expected)  # the trees walked in Python (a few rows)
    assert np.array_equal(compiled.array(rows), expected)  # one array through the trees' own code (a request's)
    assert np.array_equal(compiled.probabilities(rows), expected)
    # Every size a slot meets takes the path it should and gets the same numbers: scikit-learn's above the array's.
    slot = ModelSlot.of("champion", "churn_model", "1", champion_model)
    assert slot.compiled is not None
    many = (rows * 2)[: MAX_ARRAY_ROWS + 1]
    wanted = churn_probability(champion_model, model_input(pd.DataFrame(many), champion_model))
    for size in (1, MAX_ROWS, MAX_ROWS + 1, 100, MAX_ARRAY_ROWS, MAX_ARRAY_ROWS + 1):
        assert np.array_equal(slot.probabilities(many[:size], FEATURES), wanted[:size]), size


def test_a_requests_rows_are_encoded_once_for_models_that_read_them_alike(champion_model) -> None:
    frame = ChurnWorld(drift_start=START).features(DAY)
    rows = frame[FEATURES].astype(object).to_dict("records")[:50]
    rows[0] = {**rows[0], "logins_30d": None, "plan": None, "region": "atlantis"}
    rows[1] = {**rows[1], "logins_30d": float("nan"), "plan": float("nan")}
    champion = ModelSlot.of("champion", "m", "1", champion_model)
    challenger = ModelSlot.of("challenger", "m", "2", champion_model)  # the same categories: the same encoding
    assert champion.compiled is not None and challenger.compiled is not None
    # The column-at-a-time encoding is the row-at-a-time one, to the bit (NaN where missing).
    assert np.array_equal(
        champion.compiled.encode(rows), np.array([champion.compiled.inputs(r) for r in rows]), equal_nan=True
    )
    encoded = EncodedRows(rows)
    first = encoded.array(champion.compiled)
    assert encoded.array(challenger.compiled) is first
    # A model fitted on other categories reads the rows otherwise: its own array, and its own right answer.
    fewer = frame[frame["region"] != frame["region"].iloc[0]]
    labels = ChurnWorld().labels(DAY, fewer)["churned"].to_numpy()
    other = build_pipeline(TrainingParams(), declared_features(CONTRACT))
    other.fit(model_input(fewer, champion_model), labels)
    retrained = ModelSlot.of("challenger", "m", "3", other)
    assert retrained.compiled is not None and retrained.compiled.encoding != champion.compiled.encoding
    assert encoded.array(retrained.compiled) is not first
    expected = churn_probability(other, model_input(pd.DataFrame(rows), other))
    assert np.array_equal(retrained.probabilities(encoded, FEATURES), expected)
    assert np.array_equal(champion.probabilities(encoded, FEATURES), champion.probabilities(rows, FEATURES))


def test_models_the_fast_path_does_not_know_keep_scikit_learn(champion_model) -> None:
    frame = ChurnWorld().features(START)
    labels = ChurnWorld().labels(START, frame)["churned"].to_numpy()
    logistic = build_pipeline(TrainingParams(model_kind=ModelKind.logistic_regression), declared_features(CONTRACT))
    logistic.fit(model_input(frame, champion_model), labels)
    assert compile_model(logistic) is None
    slot = ModelSlot.of("champion", "m", "1", logistic)
    rows = frame[FEATURES].to_dict("records")[:3]
    expected = churn_probability(logistic, model_input(pd.DataFrame(rows), logistic))
    assert np.array_equal(slot.probabilities(rows, FEATURES), expected)


def test_predictor_answers_alike_on_both_paths_with_deterministic_variants(champion_model, tmp_path: Path) -> None:
    frame = ChurnWorld().features(DAY)
    store = SqliteOnlineStore(tmp_path / "online.sqlite")
    store.publish(frame, day=DAY, entity_columns=CONTRACT.entity, feature_names=FEATURES, delta_version=None)
    champion = ModelSlot.of("champion", "churn_model", "1", champion_model)
    challenger = ModelSlot.of("challenger", "churn_model", "2", champion_model)
    policy = ServingPolicy(experiment="e", challenger_share=0.5, shadow=True)
    predictor = Predictor(store, LoadedModels(champion, challenger), RiskBands(*CONTRACT.risk_bands), policy)
    keys = list(frame[CONTRACT.entity[0]].iloc[: 4 * MAX_ROWS])
    together = predictor.predict(keys)  # more rows than the trees are walked for: the array path
    one_by_one = [predictor.predict([key]).predictions[0] for key in keys]  # the trees walked
    assert [p.probability for p in together.predictions] == [p.probability for p in one_by_one]
    assert [p.variant for p in together.predictions] == [assign_variant("e", k, 0.5) for k in keys]
    assert {p.model_version for p in together.predictions if p.variant == "challenger"} == {"2"}
    shadow = predictor.shadow(together)
    assert shadow is not None and shadow.model_version == "2"
    assert np.array_equal(shadow.probabilities, [p.probability for p in together.predictions])
    with pytest.raises(UnknownEntitiesError, match="nobody"):
        predictor.predict([keys[0], "nobody"])


def test_the_prediction_log_keeps_rows_through_failed_flushes(tmp_path: Path) -> None:
    blocked = tmp_path / "lake"
    blocked.write_text("a file where the lake's folder should be")  # every write fails
    writer = PredictionLogWriter(blocked, flush_rows=1_000, flush_seconds=60)
    stamp = dt.datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    writer.append([_row(i, stamp) for i in range(5)])
    assert writer.flush() == 0
    stats = writer.stats()
    assert (stats.failed_flushes, stats.rows_buffered, stats.rows_written) == (1, 5, 0)
    assert stats.last_error is not None
    blocked.unlink()  # the lake is back: the next flush writes what the failed one kept
    writer.append([_row(5, stamp)])
    assert writer.close().rows_written == 6
    log = read_prediction_log(blocked, DAY)
    assert list(log["entity_key"]) == [f"c{i}" for i in range(6)]
    assert log["requested_at"].iloc[0] == pd.Timestamp(stamp)  # microseconds kept


def test_the_prediction_log_flushes_by_rows_in_the_background(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, flush_rows=10, flush_seconds=60).start()
    stamp = dt.datetime.now(dt.UTC)
    writer.append([_row(i, stamp) for i in range(25)])
    deadline = time.monotonic() + 10  # the full buffer woke the writer: no minute-long wait
    while writer.stats().rows_written < 25 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert writer.stats().rows_written == 25
    assert writer.close().files_written == 1
    assert len(read_prediction_log(tmp_path, DAY)) == 25


def test_a_full_prediction_log_drops_its_oldest_rows_and_counts_them(tmp_path: Path) -> None:
    blocked = tmp_path / "lake"
    blocked.write_text("a file where the lake's folder should be")
    writer = PredictionLogWriter(blocked, flush_rows=1_000, flush_seconds=60, max_buffered_rows=7)
    stamp = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    for start in (0, 5, 10):  # three requests of five rows: the buffer keeps the newest seven
        writer.append([_row(i, stamp) for i in range(start, start + 5)])
    assert writer.flush() == 0
    stats = writer.stats()
    assert (stats.rows_buffered, stats.rows_dropped) == (7, 8)
    blocked.unlink()
    assert writer.close().rows_written == 7
    assert list(read_prediction_log(blocked, DAY)["entity_key"]) == [f"c{i}" for i in range(8, 15)]


def test_the_prediction_log_writes_a_file_per_feature_day(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, flush_rows=1_000, flush_seconds=60)
    stamp = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    other_day = DAY + dt.timedelta(days=1)
    rows = [_row(i, stamp) for i in range(6)]
    for row in rows[::2]:
        row["feature_snapshot_date"] = other_day  # a snapshot published in the middle of the buffer
    writer.append(rows)
    assert writer.close().files_written == 2
    assert list(read_prediction_log(tmp_path, DAY)["entity_key"]) == ["c1", "c3", "c5"]
    assert list(read_prediction_log(tmp_path, other_day)["entity_key"]) == ["c0", "c2", "c4"]


def test_gathered_rows_become_one_batch_with_every_value_in_place(tmp_path: Path) -> None:
    gathered = GatheredRows()
    stamp = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    for request, keys in enumerate((["a", "b"], ["c"], ["d", "e", "f"])):
        columns = {**_row(0, stamp), "request_id": f"r{request}", "entity_key": keys}
        columns["probability"] = np.linspace(0.1, 0.3, len(keys))  # an array, as the predictor gives it
        columns["shadow_probability"] = None  # one value for every row of the request
        gathered.add(columns, len(keys))
    assert gathered.rows == 6
    with pytest.raises(ValueError, match="'entity_key' has 1 values for 2 rows"):  # refused whole: no column grows
        gathered.add({**_row(0, stamp), "entity_key": ["g"]}, 2)
    assert gathered.rows == 6
    batch = gathered.take()
    assert batch is not None and gathered.rows == 0 and gathered.take() is None
    writer = PredictionLogWriter(tmp_path, flush_rows=1_000, flush_seconds=60)
    writer.append(batch)
    writer.close()
    log = read_prediction_log(tmp_path, DAY)
    assert list(log["entity_key"]) == list("abcdef")
    assert list(log["request_id"]) == ["r0", "r0", "r1", "r2", "r2", "r2"]
    assert list(log["probability"]) == [0.1, 0.3, 0.1, 0.1, 0.2, 0.3]
    assert log["shadow_probability"].isna().all() and set(log["feature_snapshot_date"]) == {DAY}


def _row(i: int, stamp: dt.datetime) -> dict:
    return {
        "request_id": "r",
        "entity_key": f"c{i}",
        "features": "{}",
        "overrides": "{}",
        "model_name": "m",
        "model_version": "1",
        "variant": "champion",
        "probability": 0.5,
        "risk_band": "high",
        "shadow_model_version": None,
        "shadow_probability": None,
        "latency_ms": 1.0,
        "requested_at": stamp + dt.timedelta(microseconds=i),
        "feature_snapshot_date": DAY,
    }
