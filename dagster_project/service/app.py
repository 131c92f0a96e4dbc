"""The prediction service: HTTP over ``defs/serving/predictor.py``, with hot reload, metrics and the prediction log.

Endpoints: ``POST /predict``, ``GET /healthz`` (the process answers), ``GET /readyz`` (200 once a champion and an
online snapshot are there, else 503 saying what is missing), ``GET /model`` (what is in service), ``GET /metrics``.

``POST /predict`` takes ``{"entities": [...], "overrides": {...}}``: the entities are the key values (a list of the
key's values, in the contract's order, for a composite key), the optional overrides map an entity's key (as the
answer spells it) to feature values used instead of the stored ones. The answer: a request id and, per entity, the
probability, the risk band, the model's name and version, the feature snapshot's day and the A/B variant.

The request path is kept lean, as the service answers one entity in a few milliseconds: the body is parsed by
pydantic from bytes, the handler runs on the event loop (the work is CPU-bound under the GIL and the store's reads
take well under a millisecond, so a hop to a worker thread would only add its own latency), the model runs on
one OpenMP thread (for a handful of rows, waking a thread team costs more than it saves and makes the tail long),
and everything after the answer (the shadow's scoring, the log rows) waits for a moment when no request is in
flight (``idle.py``): a shadow that doubles the model's work does not double the requests' wait. The log's writer
thread only joins Arrow batches and writes Parquet, work outside the GIL. What is
alive once the service has started and whenever it has loaded models (the imports' and the models' objects, half a
million of them) is frozen out of the garbage collector's scans (``gc.freeze``): a full collection over them takes a
few hundred milliseconds, a pause in the middle of whichever request's allocations set it off.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from dagster_project.defs.ml.tracking import CHALLENGER, CHAMPION
from dagster_project.defs.scoring.scores import RiskBands
from dagster_project.defs.serving.prediction_log import GatheredRows, PredictionLogWriter
from dagster_project.defs.serving.predictor import (
    InvalidOverrideError,
    LoadedModels,
    NoModelError,
    PredictionBatch,
    Predictor,
    ServingPolicy,
    UnknownEntitiesError,
)
from dagster_project.online_store import NoOnlineSnapshotError, OnlineStoreUnavailableError, entity_key
from dagster_project.resources import MlflowResource, OnlineStoreResource
from dagster_project.service.idle import AfterAnswers
from dagster_project.service.metrics import ServiceMetrics
from dagster_project.service.watcher import ModelWatcher
from dagster_project.settings import Settings

logger = logging.getLogger(__name__)

# Rows waiting for the shadow and the log before a request does its own on its path (``idle.AfterAnswers``).
MAX_PENDING_ROWS = 50_000
# Gathered log rows go to the writer by this many, or when the service is idle and they have waited this long.
HAND_OVER_ROWS, HAND_OVER_SECONDS = 2_000, 0.5
ENDPOINTS = ("/predict", "/healthz", "/readyz", "/model", "/metrics")
KeyValue = StrictStr | StrictInt
FeatureValue = StrictBool | StrictInt | StrictFloat | StrictStr | None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entities: list[KeyValue | list[KeyValue]] = Field(min_length=1)
    overrides: dict[str, dict[str, FeatureValue]] = Field(default_factory=dict)


def _json(status: int, body: dict[str, Any], request_id: str | None = None) -> Response:
    """A JSON answer, written by orjson: a hundred predictions in a tenth of ``json.dumps``'s time, floats alike
    (the shortest text that reads back to the same double)."""
    headers = {"x-request-id": request_id} if request_id else None
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


class Service:
    """What the app holds between requests: the store, the models' watcher, the predictor, the log, the metrics."""

    def __init__(self, settings: Settings, bands: RiskBands, mlflow: MlflowResource) -> None:
        serving = settings.serving
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.policy = ServingPolicy(serving.experiment, serving.challenger_share, serving.shadow)
        self.store = OnlineStoreResource.from_settings(settings).open()
        self.watcher = ModelWatcher(
            mlflow,
            reload_seconds=serving.reload_seconds,
            with_challenger=serving.challenger_share > 0 or serving.shadow,
            on_swap=self.models_swapped,
        )
        self.predictor = Predictor(self.store, self.watcher.current, bands, self.policy)
        self.log = PredictionLogWriter(
            str(settings.lake_root), flush_rows=serving.log_flush_rows, flush_seconds=serving.log_flush_seconds
        )
        self.gathered = GatheredRows()  # log rows not yet handed to the writer
        self._handed_at = time.monotonic()
        self.after_answers = AfterAnswers(
            lambda item: self.record(*item),
            max_pending_rows=MAX_PENDING_ROWS,
            when_idle=lambda: self.hand_rows_over(HAND_OVER_SECONDS),
            idle_seconds=HAND_OVER_SECONDS,
        )
        self.metrics.watch(self.log.stats, lambda: (self.watcher.reloads, self.watcher.failures))
        self._thread_limits: Any = None

    def start(self) -> None:
        from threadpoolctl import threadpool_limits

        self._thread_limits = threadpool_limits(limits=1, user_api="openmp")
        self.log.start()
        self.watcher.start()
        self.after_answers.start()
        gc.freeze()

    def models_swapped(self, old: LoadedModels | None, new: LoadedModels) -> None:
        """After a model set is loaded: its objects join the ones the garbage collector no longer scans."""
        self.metrics.models_swapped(old, new)
        gc.freeze()

    def stop(self) -> None:
        self.watcher.stop()
        self.hand_rows_over()  # the gathered rows reach the writer's buffer...
        stats = self.log.close()  # ...and the buffer the lake
        logger.info("prediction log: %s", stats)
        self.store.close()
        if self._thread_limits is not None:
            self._thread_limits.restore_original_limits()

    def after_answer(
        self, batch: PredictionBatch, request_id: str, requested_at: dt.datetime, latency_ms: float
    ) -> None:
        """The shadow's scores and the batch's log rows, done when no request waits (``idle.AfterAnswers``)."""
        self.after_answers.submit((batch, request_id, requested_at, latency_ms), len(batch.keys))

    def hand_rows_over(self, older_than: float = 0.0) -> None:
        """Give the gathered log rows to the writer, if any have waited ``older_than`` seconds since the last time."""
        if self.gathered.rows and time.monotonic() - self._handed_at >= older_than:
            rows = self.gathered.rows
            self._handed_at = time.monotonic()
            try:
                batch = self.gathered.take()
            except Exception:
                self.metrics.errors.labels("prediction_log").inc()
                logger.exception("%d prediction log rows could not be made into a batch: not logged", rows)
                return
            if batch is not None:
                self.log.append(batch)

    def record(self, batch: PredictionBatch, request_id: str, requested_at: dt.datetime, latency_ms: float) -> None:
        """Score the shadow and buffer the batch's log rows, a column at a time; a failure is counted and logged,
        never raised (the answer is already sent)."""
        started = time.perf_counter()
        try:
            shadow = self.predictor.shadow(batch)
            shadowed = time.perf_counter()
            predictions = batch.predictions
            overrides = batch.overrides
            stored = batch.lookup.payloads
            dumps = orjson.dumps
            self.gathered.add(
                {
                    "request_id": request_id,
                    "entity_key": batch.keys,
                    # As stored, unless overridden: the store's JSON is orjson's, which reads back to the same values.
                    "features": [
                        dumps(row).decode() if key in overrides else stored[key]
                        for key, row in zip(batch.keys, batch.rows, strict=True)
                    ],
                    "overrides": [dumps(overrides[key]).decode() if key in overrides else "{}" for key in batch.keys]
                    if overrides
                    else "{}",
                    "model_name": [p.model_name for p in predictions],
                    "model_version": [p.model_version for p in predictions],
                    "variant": [p.variant for p in predictions],
                    "probability": [p.probability for p in predictions],
                    "risk_band": [p.risk_band for p in predictions],
                    "shadow_model_version": None if shadow is None else shadow.model_version,
                    "shadow_probability": None if shadow is None else shadow.probabilities,
                    "latency_ms": latency_ms,
                    "requested_at": requested_at,
                    "feature_snapshot_date": batch.lookup.snapshot.day,
                },
                len(batch.keys),
            )
            if self.gathered.rows >= HAND_OVER_ROWS:
                self.hand_rows_over()
            if shadow is not None:
                self.metrics.stages["shadow"].observe(shadowed - started)
            self.metrics.stages["log"].observe(time.perf_counter() - shadowed)
        except Exception:
            self.metrics.errors.labels("prediction_log").inc()
            logger.exception("request %s: its prediction log rows could not be made", request_id)


def create_app(settings: Settings, *, bands: RiskBands | None = None, mlflow: MlflowResource | None = None) -> FastAPI:
    """The prediction service of ``settings``. ``bands``: the risk bands (default: the problem's contract's);
    ``mlflow``: the registry (default: the settings')."""
    if bands is None:
        from dagster_project.problem import load_problem

        bands = RiskBands(*load_problem(settings).contract.risk_bands)
    service = Service(settings, bands, mlflow or MlflowResource.from_settings(settings))
    limit = settings.serving.max_entities_per_request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await service.after_answers.drain()
            service.stop()

    app = FastAPI(title="Churn prediction service", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    app.add_middleware(_MetricsMiddleware, metrics=service.metrics, after_answers=service.after_answers)

    def error(status: int, kind: str, detail: str, request_id: str, **extra: Any) -> Response:
        service.metrics.errors.labels(kind).inc()
        return _json(status, {"error": kind, "detail": detail, "request_id": request_id, **extra}, request_id)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        received = time.perf_counter()
        requested_at = dt.datetime.now(dt.UTC)
        request_id = uuid.uuid4().hex
        body = await request.body()
        try:
            parsed = PredictRequest.model_validate_json(body)
        except ValidationError as invalid:
            errors = invalid.errors(include_url=False, include_context=False, include_input=False)
            return error(422, "invalid_request", "the request body is not a valid prediction request", request_id,
                         errors=errors)  # fmt: skip
        if len(parsed.entities) > limit:
            return error(
                422, "too_many_entities",
                f"at most {limit} entities per request (serving.max_entities_per_request); got {len(parsed.entities)}",
                request_id, limit=limit,
            )  # fmt: skip
        keys = [entity_key(e if isinstance(e, list) else (e,)) for e in parsed.entities]
        parsed_at = time.perf_counter()
        try:
            batch = service.predictor.predict(keys, parsed.overrides)
        except UnknownEntitiesError as unknown:
            return error(404, "unknown_entity", str(unknown), request_id, entities=list(unknown.missing))
        except InvalidOverrideError as invalid:
            return error(422, "invalid_override", str(invalid), request_id)
        except NoModelError as missing:
            detail = f"{missing}: {service.watcher.last_error or 'the model is loading'}"
            return error(503, "model_not_loaded", detail, request_id)
        except (OnlineStoreUnavailableError, NoOnlineSnapshotError) as down:
            return error(503, "online_store_unavailable", f"the online store cannot answer: {down}", request_id)
        except Exception:
            logger.exception("request %s failed", request_id)
            return error(500, "internal_error", "the prediction failed; the service log has the details", request_id)
        latency_ms = (time.perf_counter() - received) * 1000
        service.after_answer(batch, request_id, requested_at, latency_ms)
        stages = service.metrics.stages
        stages["parse"].observe(parsed_at - received)
        stages["lookup"].observe(batch.lookup_seconds)
        stages["predict"].observe(batch.predict_seconds)
        variants = [p.variant for p in batch.predictions]
        for variant in (CHAMPION, CHALLENGER):
            count = variants.count(variant)
            if count:
                service.metrics.predictions.labels(variant).inc(count)
        return _json(
            200,
            {"request_id": request_id, "predictions": batch.predictions},  # orjson writes the dataclasses itself
            request_id,
        )

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        missing = []
        if service.watcher.current() is None:
            missing.append(f"model: no champion loaded ({service.watcher.last_error or 'loading'})")
        try:
            if service.store.current() is None:
                missing.append("online store: it holds no snapshot yet (materialize serving/online_store)")
        except OnlineStoreUnavailableError as down:
            missing.append(f"online store: {down}")
        if missing:
            return _json(503, {"status": "not ready", "missing": missing})
        return _json(200, {"status": "ready"})

    @app.get("/model")
    async def model() -> Response:
        models = service.watcher.current()
        try:
            snapshot = service.store.current()
            store: dict[str, Any] = {"available": True}
        except OnlineStoreUnavailableError as down:
            snapshot, store = None, {"available": False, "error": str(down)}
        loaded_at = None if models is None else dt.datetime.fromtimestamp(models.loaded_at, dt.UTC).isoformat()
        slots = {} if models is None else {CHAMPION: models.champion, CHALLENGER: models.challenger}
        return _json(
            200,
            {
                "model_name": service.watcher.store.model_name,
                "aliases": {role: None if slot is None else slot.version for role, slot in slots.items()},
                "loaded_at": loaded_at,
                "experiment": service.policy.experiment,
                "challenger_share": service.policy.challenger_share,
                "shadow": service.policy.shadow,
                "reload_seconds": service.watcher.reload_seconds,
                "reload_error": service.watcher.last_error,
                "snapshot_day": None if snapshot is None else snapshot.day.isoformat(),
                "snapshot": None if snapshot is None else {
                    "day": snapshot.day.isoformat(), "entities": snapshot.entities,
                    "delta_version": snapshot.delta_version, "published_at": snapshot.published_at,
                },
                "online_store": {"backend": settings.serving.online_backend.value, **store},
            },
        )  # fmt: skip

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc)
        return _json(500, {"error": "internal_error", "detail": "the request failed; the service log has the details"})

    return app


class _MetricsMiddleware:
    """Counts every request by endpoint and status and times it to its answer's last byte, and tells the work after
    the answers which requests are in flight (plain ASGI: no per-request task or body copy)."""

    def __init__(self, app: Any, metrics: ServiceMetrics, after_answers: AfterAnswers) -> None:
        self.app = app
        self.metrics = metrics
        self.after_answers = after_answers
        self.seconds = {e: metrics.request_seconds.labels(e) for e in (*ENDPOINTS, "other")}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        status = 500
        started = time.perf_counter()
        answered = False
        self.after_answers.started()

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
                self.after_answers.answered()

        try:
            await self.app(scope, receive, send_status)
        finally:
            if not answered:
                self.after_answers.answered()
            self.seconds[endpoint].observe(time.perf_counter() - started)
            self.metrics.requests.labels(endpoint, str(status)).inc()
