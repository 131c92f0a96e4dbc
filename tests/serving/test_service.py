"""The prediction service, started for real (uvicorn on a free loopback port, in a thread) and spoken to over HTTP.

Set-up, once per module: a copy of the session's churn-world champion registry (``world_champion``: trained once,
never moved) with a second version of the same model registered, so aliases can move without retraining; the
churn world's snapshot of ``DAY`` written to the Delta offline store, read back as batch scoring reads it, scored
in process by ``score_snapshot`` and published into a SQLite online store. Tests that move aliases get their own
copy of the registry.
"""

import datetime as dt
import gc
import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from churn_world import CONTRACT, START, ChurnWorld
from deployed_platform import free_port

from dagster_project.defs.ml.aliases import move_alias
from dagster_project.defs.ml.registry import load_version
from dagster_project.defs.ml.tracking import CHALLENGER, CHAMPION
from dagster_project.defs.scoring.scores import PROBABILITY, RiskBands, read_feature_snapshot, score_snapshot
from dagster_project.defs.serving.prediction_log import read_prediction_log
from dagster_project.defs.serving.predictor import assign_variant
from dagster_project.online_store import SqliteOnlineStore
from dagster_project.resources import MlflowResource
from dagster_project.service.app import create_app
from dagster_project.settings import OnlineBackend, ServingSettings, Settings

DAY = START + dt.timedelta(days=75)  # a day after the champion's training window
BANDS = RiskBands(*CONTRACT.risk_bands)
FEATURES = [f.name for f in CONTRACT.features]
ENTITY = CONTRACT.entity[0]
MAX_ENTITIES = 1_000


@dataclass(frozen=True)
class World:
    root: Path
    registry_db: Path  # the registry copy with versions 1 and 2 (champion: 1)
    artifact_root: str
    lake_root: Path
    snapshot: pd.DataFrame  # DAY's features as batch scoring reads them
    expected: dict[str, float]  # batch scoring's probability per entity, by model version 1

    def registry(self, folder: Path) -> MlflowResource:
        """A registry of its own (a copy of the module's), for a test that moves aliases."""
        (folder / "mlflow").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.registry_db, folder / "mlflow" / "mlflow.db")
        return MlflowResource(
            tracking_uri=f"sqlite:///{folder / 'mlflow' / 'mlflow.db'}",
            artifact_root=self.artifact_root,
            experiment_name="churn_model",
            model_name="churn_model",
        )

    def publish(self, path: Path) -> None:
        SqliteOnlineStore(path).publish(
            self.snapshot, day=DAY, entity_columns=CONTRACT.entity, feature_names=FEATURES, delta_version=None
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, world_champion: MlflowResource) -> World:
    root = tmp_path_factory.mktemp("serving")
    source_db = Path(world_champion.tracking_uri.removeprefix("sqlite:///"))
    registry_db = root / "registry.db"
    shutil.copyfile(source_db, registry_db)
    store = MlflowResource(
        tracking_uri=f"sqlite:///{registry_db}",
        artifact_root=world_champion.artifact_root,
        experiment_name="churn_model",
        model_name="churn_model",
    )
    client = store.client()
    first = client.get_model_version(store.model_name, "1")
    # Version 2: the same model registered again, so a test can move an alias to another version without training.
    client.create_model_version(store.model_name, source=first.source, run_id=first.run_id)
    lake_root = root / "lake"
    ChurnWorld().write_feature_snapshots(lake_root, [DAY])
    snapshot = read_feature_snapshot(lake_root, DAY, CONTRACT)
    scores = score_snapshot(
        load_version(store, "1"), snapshot, CONTRACT, model_name=store.model_name, model_version="1", bands=BANDS
    )
    expected = dict(zip(scores[ENTITY], scores[PROBABILITY], strict=True))
    return World(root, registry_db, world_champion.artifact_root, lake_root, snapshot, expected)


def service_settings(folder: Path, **serving: object) -> Settings:
    values = {
        "port": free_port(),
        "reload_seconds": 0.3,
        "log_flush_seconds": 0.2,
        "max_entities_per_request": MAX_ENTITIES,
        "online_store_path": folder / "online" / "features.sqlite",
        **serving,
    }
    return Settings(data_root=folder / "data", lake_root=folder / "lake", serving=ServingSettings(**values))


@contextmanager
def running(settings: Settings, registry: MlflowResource) -> Iterator[httpx.Client]:
    """The service on its port, in a thread of this process; an HTTP client pointed at it."""
    app = create_app(settings, bands=BANDS, mlflow=registry)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.serving.port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the service did not start"
        assert time.monotonic() < deadline, "the service did not start within 30 s"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.serving.port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        assert not thread.is_alive(), "the service did not stop"


def wait_until(condition, seconds: float = 30, step: float = 0.05):
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value is not None and value is not False:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(step)


def ready(client: httpx.Client) -> None:
    wait_until(lambda: client.get("/readyz").status_code == 200)


@pytest.fixture(scope="module")
def served(world: World) -> Iterator[tuple[httpx.Client, Settings]]:
    """The module's service: champion version 1, no challenger, on the published SQLite store."""
    folder = world.root / "served"
    settings = service_settings(folder)
    world.publish(settings.serving.online_store_path)
    with running(settings, world.registry(folder)) as client:
        ready(client)
        yield client, settings


def entities(world: World, count: int) -> list[str]:
    return list(world.snapshot[ENTITY].iloc[:count])


def test_predict_one_and_many_equal_batch_scoring(world: World, served: tuple[httpx.Client, Settings]) -> None:
    client, _ = served
    one = entities(world, 1)[0]
    answer = client.post("/predict", json={"entities": [one]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["request_id"]) == 32 and answer.headers["x-request-id"] == body["request_id"]
    (prediction,) = body["predictions"]
    assert prediction["entity"] == one
    assert prediction["probability"] == pytest.approx(world.expected[one], abs=1e-9)
    assert prediction["risk_band"] == BANDS.assign(np.array([world.expected[one]]))[0]
    assert (prediction["model_name"], prediction["model_version"]) == ("churn_model", "1")
    assert prediction["variant"] == CHAMPION
    assert prediction["feature_snapshot_date"] == DAY.isoformat()

    many = entities(world, 200)
    answer = client.post("/predict", json={"entities": many})
    assert answer.status_code == 200, answer.text
    got = {p["entity"]: p["probability"] for p in answer.json()["predictions"]}
    assert list(got) == many
    assert np.allclose([got[e] for e in many], [world.expected[e] for e in many], rtol=0, atol=1e-9)


def test_overrides_change_the_answer_as_batch_scoring_would(
    world: World, served: tuple[httpx.Client, Settings]
) -> None:
    client, _ = served
    one = entities(world, 3)[2]
    overrides = {"payment_failures_30d": 4, "support_tickets_30d": 6, "contract": "monthly"}
    answer = client.post("/predict", json={"entities": [one], "overrides": {one: overrides}})
    assert answer.status_code == 200, answer.text
    probability = answer.json()["predictions"][0]["probability"]
    row = world.snapshot[world.snapshot[ENTITY] == one].assign(**overrides)
    batch = score_snapshot(
        load_version(world.registry(world.root / "overrides"), "1"), row, CONTRACT, model_name="m", model_version="1"
    )
    assert probability == pytest.approx(float(batch[PROBABILITY].iloc[0]), abs=1e-9)
    assert abs(probability - world.expected[one]) > 1e-3

    unknown = client.post("/predict", json={"entities": [one], "overrides": {one: {"no_such_feature": 1}}})
    assert unknown.status_code == 422 and "no_such_feature" in unknown.json()["detail"]
    typed = client.post("/predict", json={"entities": [one], "overrides": {one: {"logins_30d": "many"}}})
    assert typed.status_code == 422 and "logins_30d" in typed.json()["detail"]


def test_errors_name_what_is_wrong(world: World, served: tuple[httpx.Client, Settings]) -> None:
    client, _ = served
    known = entities(world, 1)[0]
    missing = client.post("/predict", json={"entities": [known, "nobody-42"]})
    assert missing.status_code == 404
    assert missing.json()["entities"] == ["nobody-42"] and "nobody-42" in missing.json()["detail"]

    for body in (b"{not json", b'{"entities": []}', b'{"entity": ["x"]}', b'{"entities": [1.5]}', b"[]"):
        malformed = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert malformed.status_code == 422, body
        assert malformed.json()["error"] == "invalid_request"
        assert "Traceback" not in malformed.text

    too_many = client.post("/predict", json={"entities": [known] * (MAX_ENTITIES + 1)})
    assert too_many.status_code == 422
    assert str(MAX_ENTITIES) in too_many.json()["detail"] and too_many.json()["limit"] == MAX_ENTITIES


def test_model_endpoint_and_metrics(world: World, served: tuple[httpx.Client, Settings]) -> None:
    client, _ = served
    assert client.post("/predict", json={"entities": entities(world, 1)}).status_code == 200
    assert client.post("/predict", json={"entities": ["nobody"]}).status_code == 404
    model = client.get("/model").json()
    assert model["aliases"] == {CHAMPION: "1", CHALLENGER: None}
    assert model["snapshot_day"] == DAY.isoformat() and model["snapshot"]["entities"] == len(world.snapshot)
    assert (model["challenger_share"], model["shadow"]) == (0.0, False)

    text = client.get("/metrics").text
    assert 'serving_requests_total{endpoint="/predict",status="200"}' in text
    assert 'serving_requests_total{endpoint="/predict",status="404"}' in text
    assert 'serving_errors_total{kind="unknown_entity"}' in text
    for stage in ("parse", "lookup", "predict", "log"):
        assert f'serving_stage_seconds_bucket{{le="0.01",stage="{stage}"}}' in text, stage
    assert 'serving_request_seconds_count{endpoint="/predict"}' in text
    assert 'serving_model_info{name="churn_model",role="champion",version="1"} 1.0' in text
    assert 'serving_predictions_total{variant="champion"}' in text
    assert "serving_prediction_log_failed_flushes_total 0.0" in text


def test_prediction_log_rows_are_written_and_read_back(world: World, served: tuple[httpx.Client, Settings]) -> None:
    client, settings = served
    asked = entities(world, 5)
    overrides = {asked[0]: {"logins_30d": 0}}
    answer = client.post("/predict", json={"entities": asked, "overrides": overrides}).json()
    request_id = answer["request_id"]

    def logged() -> pd.DataFrame | None:
        log = read_prediction_log(settings.lake_root, DAY)
        rows = log[log["request_id"] == request_id]
        return rows if len(rows) == len(asked) else None

    rows = wait_until(logged, seconds=20).reset_index(drop=True)
    assert list(rows["entity_key"]) == asked
    assert list(rows["probability"]) == [p["probability"] for p in answer["predictions"]]
    stored = world.snapshot.set_index(ENTITY)
    first = json.loads(rows["features"][0])
    assert first["logins_30d"] == 0 and json.loads(rows["overrides"][0]) == {"logins_30d": 0}
    second = json.loads(rows["features"][1])
    assert second == {f: _plain(stored.loc[asked[1], f]) for f in FEATURES}
    assert set(rows["model_version"]) == {"1"} and set(rows["variant"]) == {CHAMPION}
    assert rows["shadow_probability"].isna().all() and rows["shadow_model_version"].isna().all()
    assert (rows["latency_ms"] > 0).all()
    assert str(rows["requested_at"].dt.tz) == "UTC"
    assert set(rows["feature_snapshot_date"]) == {DAY}


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value


def test_readyz_says_what_is_missing_until_the_store_holds_a_snapshot(world: World, tmp_path: Path) -> None:
    settings = service_settings(tmp_path)
    with running(settings, world.registry(tmp_path)) as client:
        assert client.get("/healthz").status_code == 200
        # The model loads in the background; the store stays empty.
        missing = wait_until(lambda: _missing_only_the_store(client))
        assert "online store" in missing[0] and "snapshot" in missing[0]
        empty = client.post("/predict", json={"entities": entities(world, 1)})
        assert empty.status_code == 503 and "snapshot" in empty.json()["detail"]
        world.publish(settings.serving.online_store_path)
        assert client.get("/readyz").status_code == 200
        assert client.post("/predict", json={"entities": entities(world, 1)}).status_code == 200


def _missing_only_the_store(client: httpx.Client) -> list[str] | None:
    answer = client.get("/readyz")
    assert answer.status_code == 503
    missing = answer.json()["missing"]
    return missing if len(missing) == 1 and missing[0].startswith("online store") else None


def test_a_store_that_is_down_answers_503(world: World, tmp_path: Path) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings = service_settings(tmp_path, online_backend=OnlineBackend.redis, redis_url=closed)
    with running(settings, world.registry(tmp_path)) as client:
        missing = wait_until(lambda: _missing_only_the_store(client))  # the model loaded, the store is down
        assert "cannot be reached" in missing[0]
        answer = client.post("/predict", json={"entities": entities(world, 1)})
        assert answer.status_code == 503
        assert answer.json()["error"] == "online_store_unavailable" and "cannot be reached" in answer.json()["detail"]
        assert client.get("/healthz").status_code == 200


def test_hot_reload_moves_to_the_new_champion_without_a_failed_request(world: World, tmp_path: Path) -> None:
    settings = service_settings(tmp_path)
    world.publish(settings.serving.online_store_path)
    registry = world.registry(tmp_path)
    with running(settings, registry) as client:
        ready(client)
        answered: list[tuple[int, str | None]] = []
        stop = threading.Event()
        asked = entities(world, 3)

        def send() -> None:
            while not stop.is_set():
                answer = client.post("/predict", json={"entities": asked})
                ok = answer.status_code == 200
                answered.append((answer.status_code, answer.json()["predictions"][0]["model_version"] if ok else None))

        sender = threading.Thread(target=send)
        sender.start()
        try:
            wait_until(lambda: len(answered) >= 10)
            move_alias(registry, CHAMPION, "2")
            moved_at = time.monotonic()
            wait_until(lambda: answered[-1][1] == "2", seconds=10 * settings.serving.reload_seconds + 5)
            switched_after = time.monotonic() - moved_at
            count = len(answered)
            wait_until(lambda: len(answered) >= count + 10)
        finally:
            stop.set()
            sender.join()
    statuses = {status for status, _ in answered}
    assert statuses == {200}, statuses
    versions = [version for _, version in answered]
    first_new = versions.index("2")
    assert set(versions[:first_new]) == {"1"} and set(versions[first_new:]) == {"2"}  # one switch, never back
    assert switched_after < 10 * settings.serving.reload_seconds + 5


def test_ab_split_is_deterministic_and_the_shadow_is_logged_never_returned(world: World, tmp_path: Path) -> None:
    share, experiment = 0.3, "test-experiment"
    settings = service_settings(tmp_path, challenger_share=share, shadow=True, experiment=experiment)
    world.publish(settings.serving.online_store_path)
    registry = world.registry(tmp_path)
    move_alias(registry, CHALLENGER, "2")
    with running(settings, registry) as client:
        ready(client)
        wait_until(lambda: client.get("/model").json()["aliases"][CHALLENGER] == "2")
        everyone = list(world.snapshot[ENTITY])
        first = client.post("/predict", json={"entities": everyone}).json()
        again = client.post("/predict", json={"entities": everyone[::-1]}).json()
    predictions = first["predictions"]
    variants = {p["entity"]: p["variant"] for p in predictions}
    assert variants == {p["entity"]: p["variant"] for p in again["predictions"]}
    assert variants == {e: assign_variant(experiment, e, share) for e in everyone}
    challenger_share = sum(v == CHALLENGER for v in variants.values()) / len(variants)
    assert abs(challenger_share - share) < 0.06, challenger_share
    for p in predictions:
        assert p["model_version"] == ("2" if p["variant"] == CHALLENGER else "1")
        assert not any("shadow" in key for key in p)

    log = read_prediction_log(settings.lake_root, DAY)  # the service flushed its log when it stopped
    rows = log[log["request_id"] == first["request_id"]]
    assert len(rows) == len(everyone)
    assert set(rows["shadow_model_version"]) == {"2"}
    # Version 2 is version 1 registered again: the shadow's probability is the champion's, to the bit.
    assert np.allclose(rows["shadow_probability"], rows["probability"], rtol=0, atol=1e-12)
    assert set(rows.loc[rows["variant"] == CHAMPION, "model_version"]) == {"1"}


def test_the_started_service_keeps_what_it_loaded_out_of_the_collectors_scans(world: World, tmp_path: Path) -> None:
    """A full garbage collection over the imports' and the models' objects would pause a request for hundreds of
    milliseconds: the service freezes them once started and once its models are loaded."""
    gc.unfreeze()
    settings = service_settings(tmp_path)
    world.publish(settings.serving.online_store_path)
    with running(settings, world.registry(tmp_path)) as client:
        ready(client)
        assert gc.get_freeze_count() > 100_000
        answer = client.post("/predict", json={"entities": entities(world, 3)})
        assert answer.status_code == 200, answer.text


def test_predict_from_the_redis_store(world: World, tmp_path: Path, redis_url: str) -> None:
    from dagster_project.online_store import RedisOnlineStore

    settings = service_settings(tmp_path, online_backend=OnlineBackend.redis, redis_url=redis_url)
    RedisOnlineStore(redis_url, prefix=settings.serving.redis_prefix).publish(
        world.snapshot, day=DAY, entity_columns=CONTRACT.entity, feature_names=FEATURES, delta_version=None
    )
    with running(settings, world.registry(tmp_path)) as client:
        ready(client)
        asked = entities(world, 20)
        for count in (1, 20):  # the fast path and scikit-learn's
            answer = client.post("/predict", json={"entities": asked[:count]})
            assert answer.status_code == 200, answer.text
            got = [p["probability"] for p in answer.json()["predictions"]]
            assert np.allclose(got, [world.expected[e] for e in asked[:count]], rtol=0, atol=1e-9)
        assert client.get("/model").json()["online_store"] == {"backend": "redis", "available": True}
