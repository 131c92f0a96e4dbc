"""The one place where environment variables and paths are read.

Every path in the project derives from ``REPO_ROOT`` through ``Settings``; every value can be overridden by an
environment variable named ``PLATFORM_<FIELD>`` (for example ``PLATFORM_LAKE_ROOT``). The defaults put all
generated data under ``<repo>/data`` so the embedded default needs no configuration at all. Nested groups
(simulator, thresholds) use a double underscore: ``PLATFORM_SIMULATOR__CUSTOMERS=100000``.
"""

from __future__ import annotations

import datetime as dt
import os
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from spark_jobs.object_store import ObjectStore, is_uri

# The package sits directly below the repository root: this is the only place that relies on it.
REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
EXAMPLES_DIR = REPO_ROOT / "examples"


class Source(StrEnum):
    """Where the raw tables come from."""

    simulator = "simulator"  # the problem's own simulator (its folder's simulator.py)
    landing = "landing"  # files dropped into the landing folder, one per table and day


class Scenario(StrEnum):
    """Drift scenarios of the simulator, starting on ``SimulatorSettings.drift_start``."""

    none = "none"
    price_rise = "price_rise"  # covariate shift: prices rise and a new, less engaged channel appears
    concept_shift = "concept_shift"  # the relation between behaviour and churn changes


class SimulatorSettings(BaseModel):
    seed: int = 42
    customers: int = Field(3_000, ge=10, description="customers already subscribed on the first day")
    scenario: Scenario = Scenario.none
    drift_start: dt.date = dt.date(2025, 4, 1)


class Simulation(SimulatorSettings):
    """What the simulator runs: its settings, and the first day it simulates (the history's first day)."""

    start_date: dt.date = dt.date(2025, 1, 1)


class Thresholds(BaseModel):
    churn_horizon_days: int | None = Field(
        None, ge=0, description="overrides the label horizon the problem's label model declares (meta horizon_days)"
    )
    max_quarantine_share: float = Field(0.05, ge=0, le=1, description="raw check fails above this share")
    drift_share: float = Field(0.3, ge=0, le=1, description="drift check fails when this share of features drift")
    drift_key_features: int = Field(
        5, ge=0, description="drift check also fails when one of the champion's N most important features drifts"
    )
    auc_floor: float = Field(0.7, ge=0, le=1, description="a challenger must reach this validation ROC AUC")
    promotion_tolerance: float = Field(0.01, ge=0, le=1, description="challenger may trail the champion by this")
    performance_tolerance: float = Field(0.05, ge=0, le=1, description="realized AUC may trail validation AUC by this")
    # A day's AUC on tens of positives moves by a few hundredths by chance: without a test a calm story retrains
    # on noise (bench/performance_false_alarms.py counts how often).
    performance_significance_level: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="the performance check fails only when a shortfall beyond the tolerance is this unlikely by "
        "chance (one-sided p-value of the realized AUC's shortfall, from the standard errors)",
    )
    retrain_cooldown_days: int = Field(7, ge=0, description="no second drift-triggered retrain within this window")


class OnlineBackend(StrEnum):
    """Where the online store keeps the latest features of every entity."""

    sqlite = "sqlite"  # embedded: one SQLite file in WAL mode under the data root, no server
    redis = "redis"  # a Redis server (``serving.redis_url``)


class ServingSettings(BaseModel):
    """The online store and the prediction service (``make serve``)."""

    online_backend: OnlineBackend = OnlineBackend.sqlite
    online_store_path: Path | None = None  # the SQLite file; derived from data_root unless set
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "online"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # How often the service asks the registry where the champion and challenger aliases point.
    reload_seconds: float = Field(10.0, gt=0)
    # A/B: the share of entities the challenger answers for (0: none), assigned by a hash of the experiment and
    # the entity, so an entity stays in its variant for as long as the experiment keeps its name.
    experiment: str = "champion-vs-challenger"
    challenger_share: float = Field(0.0, ge=0, le=1)
    # Shadow: the challenger also scores every request; its answer is logged, never returned.
    shadow: bool = False
    max_entities_per_request: int = Field(1_000, ge=1)
    # The prediction log is buffered and written as one Parquet file per flush.
    log_flush_rows: int = Field(5_000, ge=1)
    log_flush_seconds: float = Field(5.0, gt=0)


class Settings(BaseSettings):
    """Typed settings of the whole platform, read once from the environment."""

    model_config = SettingsConfigDict(env_prefix="PLATFORM_", env_nested_delimiter="__", extra="ignore")

    data_root: Path = REPO_ROOT / "data"
    # Derived from data_root unless set explicitly (see _derive_paths).
    # A folder, or an object-store prefix (s3://bucket/lake), kept as the URI it is: the store is reached as AWS's
    # own clients reach it (``object_store``).
    lake_root: Path | str | None = None
    # The object store's address as a browser reaches it, which the UI's links to files there (a drift report) are
    # signed for; unset, the address the platform reaches it at (AWS_ENDPOINT_URL), which may be a private one.
    lake_link_endpoint_url: str | None = None
    landing_root: Path | None = None
    warehouse_path: Path | None = None
    dagster_home: Path | None = None
    mlflow_tracking_uri: str | None = None
    # A folder, or an object-store prefix (s3://bucket/mlflow): MLflow reaches the store with boto3, which takes
    # its endpoint and keys from AWS's own variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    mlflow_artifact_root: str | None = None
    mlflow_experiment: str = "churn_model"
    # The UI linked from Dagster when the tracking URI is a local store (sqlite/file): `mlflow ui --port N`.
    mlflow_ui_port: int = 5000
    model_name: str = "churn_model"  # the one registered model; versions carry the challenger/champion aliases
    # Downloaded jars are no data: they live in a cache that survives wiping the data folder.
    jars_cache: Path = REPO_ROOT / ".cache" / "jars"

    # The problem: a folder of dbt models declaring the raw tables, the features and the labels (problem.py).
    # An absolute path, or one relative to the repository root: PLATFORM_PROBLEM_DIR=examples/event_log.
    problem_dir: Path = EXAMPLES_DIR / "subscription"
    # The first day of history, whatever the source: the first daily partition, and where feature windows begin.
    history_start: dt.date = dt.date(2025, 1, 1)
    source: Source = Source.simulator
    spark_master: str = "local[*]"  # or spark://host:7077, k8s://..., sc://host:15002 (Spark Connect)
    spark_driver_memory: str = "2g"
    # JVM flags of the driver (a classic session's own JVM): e.g. -XX:TieredStopAtLevel=1, which compiles with the
    # quick compiler only, a quarter off the seconds of short jobs on small data (the test suite's), at the cost of
    # long ones (tests/conftest.py).
    spark_driver_java_options: str = ""
    dbt_target: str = "dev"

    simulator: SimulatorSettings = SimulatorSettings()
    thresholds: Thresholds = Thresholds()
    serving: ServingSettings = Field(default_factory=ServingSettings)

    @model_validator(mode="before")
    @classmethod
    def _refuse_the_old_first_day(cls, values: Any) -> Any:
        simulator = values.get("simulator") if isinstance(values, dict) else None
        if isinstance(simulator, dict) and "start_date" in simulator:
            raise ValueError(
                "PLATFORM_SIMULATOR__START_DATE is no longer read: the first day of history belongs to every source; "
                "set PLATFORM_HISTORY_START instead"
            )
        return values

    @field_validator("lake_root", mode="before")
    @classmethod
    def _lake_location(cls, value: Any) -> Any:
        if value is None or value == "" or (isinstance(value, str) and is_uri(value)):
            return value or None
        return Path(value)

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        root = self.data_root
        self.problem_dir = (REPO_ROOT / self.problem_dir).resolve()  # an absolute path stays as it is
        self.lake_root = self.lake_root or root / "lake"
        self.landing_root = self.landing_root or root / "landing"
        self.warehouse_path = self.warehouse_path or root / "warehouse" / "features.duckdb"
        self.dagster_home = self.dagster_home or root / "dagster"
        self.mlflow_artifact_root = self.mlflow_artifact_root or str(root / "mlflow" / "artifacts")
        self.mlflow_tracking_uri = self.mlflow_tracking_uri or f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
        if self.serving.online_store_path is None:
            self.serving = self.serving.model_copy(update={"online_store_path": root / "online" / "features.sqlite"})
        return self

    @property
    def simulation(self) -> Simulation:
        """The simulator's settings with the first day of history: what the simulator runs."""
        return Simulation(**self.simulator.model_dump(), start_date=self.history_start)


def object_store() -> ObjectStore:
    """The object store of the lake and of MLflow's artifacts, as AWS's own clients find it in the environment
    (``ObjectStore.from_environment``): read when a location on it is opened, so one set of variables (or a
    test's) reaches the store from every client, boto3, delta-rs and DuckDB included."""
    return ObjectStore.from_environment(os.environ)


@cache
def get_settings() -> Settings:
    """The process-wide settings; tests that change the environment call ``get_settings.cache_clear()``."""
    return Settings()
