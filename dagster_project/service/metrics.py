"""The prediction service's Prometheus metrics, in a registry of its own per app (two apps in one process, as in
the tests, do not collide).

- ``serving_requests_total{endpoint,status}`` and ``serving_request_seconds{endpoint}``: every HTTP request;
- ``serving_stage_seconds{stage}``: where a prediction's time goes (parse, lookup, predict; after the
  answer, the shadow and the log rows);
- ``serving_errors_total{kind}``: the errors answered, by kind (unknown_entity, invalid_request, ...);
- ``serving_predictions_total{variant}``: entities answered by the champion or the challenger;
- ``serving_model_info{role,name,version}``: 1 for each model in service; ``serving_model_reloads_total`` and
  ``serving_model_reload_failures_total``;
- ``serving_prediction_log_*``: rows written, buffered and dropped, files written, failed flushes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dagster_project.defs.serving.prediction_log import LogStats
from dagster_project.defs.serving.predictor import LoadedModels

# Fine buckets below 10 ms, where a one-entity prediction should land.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
STAGES = ("parse", "lookup", "predict", "shadow", "log")


class _Collected(Collector):
    """Values read from their owners when /metrics is scraped: the log writer's and the watcher's counters."""

    def __init__(self, log_stats: Callable[[], LogStats], reloads: Callable[[], tuple[int, int]]) -> None:
        self.log_stats = log_stats
        self.reloads = reloads

    def collect(self) -> Iterator[Metric]:
        stats = self.log_stats()
        for name, value, text in (
            ("serving_prediction_log_rows_written", stats.rows_written, "Prediction log rows written to the lake"),
            ("serving_prediction_log_rows_dropped", stats.rows_dropped, "Rows dropped: buffer full after failures"),
            ("serving_prediction_log_files_written", stats.files_written, "Prediction log files written"),
            ("serving_prediction_log_failed_flushes", stats.failed_flushes, "Prediction log flushes that failed"),
        ):
            yield CounterMetricFamily(name, text, value=value)
        yield GaugeMetricFamily(
            "serving_prediction_log_rows_buffered", "Prediction log rows waiting for a flush", value=stats.rows_buffered
        )
        reloads, failures = self.reloads()
        yield CounterMetricFamily("serving_model_reloads", "Model sets swapped into service", value=reloads)
        yield CounterMetricFamily(
            "serving_model_reload_failures", "Registry checks or model loads that failed", value=failures
        )


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "serving_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=self.registry
        )
        self.request_seconds = Histogram(
            "serving_request_seconds", "HTTP request latency", ["endpoint"], buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.stage_seconds = Histogram(
            "serving_stage_seconds", "Prediction latency by stage", ["stage"], buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.errors = Counter("serving_errors", "Errors answered, by kind", ["kind"], registry=self.registry)
        self.predictions = Counter(
            "serving_predictions", "Entities answered, by variant", ["variant"], registry=self.registry
        )
        self.model_info = Gauge(
            "serving_model_info", "The models in service (1)", ["role", "name", "version"], registry=self.registry
        )
        # Children made once: a labelled lookup per observation costs more than the observation.
        self.stages = {stage: self.stage_seconds.labels(stage) for stage in STAGES}

    def watch(self, log_stats: Callable[[], LogStats], reloads: Callable[[], tuple[int, int]]) -> None:
        self.registry.register(_Collected(log_stats, reloads))

    def models_swapped(self, old: LoadedModels | None, new: LoadedModels) -> None:
        self.model_info.clear()
        for slot in (new.champion, new.challenger):
            if slot is not None:
                self.model_info.labels(slot.role, slot.name, slot.version).set(1)
