"""Dagster resources, built from the one settings object.

Each resource's defaults come from ``Settings``, so the definitions load with no run config and the UI's
launchpad shows the values in force; a run may still override them.
"""

import datetime as dt
import importlib.metadata
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
from dagster_dbt import DbtCliInvocation, DbtCliResource
from packaging.version import Version

from dagster_project import lake
from dagster_project.problem import problem_environment
from dagster_project.settings import (
    Scenario,
    Settings,
    Simulation,
    Source,
    Thresholds,
    get_settings,
    object_store,
)
from spark_jobs.contract import Contract
from spark_jobs.object_store import Location, ObjectStore, is_uri, join

if TYPE_CHECKING:  # mlflow is imported lazily: loading the definitions stays fast
    from mlflow import MlflowClient
    from pyspark.sql import SparkSession

    from dagster_project.online_store import OnlineStore


class LakeResource(dg.ConfigurableResource):
    """The data lake: Parquet partitions of the raw and quarantine layers (Delta tables live beside them). Its
    root is a local folder or an object-store prefix (``s3://bucket/lake``)."""

    root: str

    @property
    def location(self) -> Location:
        """The root as every lake function takes it: a ``Path``, or the URI as it is."""
        return self.root if is_uri(self.root) else Path(self.root)

    @property
    def object_store(self) -> ObjectStore | None:
        """How to reach the lake's object store (None for a local lake): what the Spark jobs are handed."""
        return object_store() if is_uri(self.root) else None

    def partition_path(self, layer: str, table: str, date: dt.date) -> Location:
        return lake.partition_path(self.location, layer, table, date)

    def write_partition(
        self, layer: str, table: str, date: dt.date, frame: pd.DataFrame, schema: pa.Schema
    ) -> Location:
        path = self.partition_path(layer, table, date)
        arrow = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        lake.write_partition_atomically(arrow, path)
        return path

    def write_raw_day(
        self,
        table: str,
        date: dt.date,
        kept: pd.DataFrame,
        schema: pa.Schema,
        quarantined: pd.DataFrame,
        quarantine_schema: pa.Schema,
    ) -> tuple[Location, Location]:
        """A raw day and its quarantine, as one commit (``lake.write_raw_day``)."""
        return lake.write_raw_day(
            self.location,
            table,
            date,
            pa.Table.from_pandas(kept, schema=schema, preserve_index=False),
            pa.Table.from_pandas(quarantined, schema=quarantine_schema, preserve_index=False),
        )


class RawSourceResource(dg.ConfigurableResource):
    """Where raw tables come from: the problem's simulator (its folder's simulator.py) or files in the landing
    folder."""

    kind: Source
    landing_root: str
    problem_dir: str  # the problem's folder, where its simulator is
    seed: int
    customers: int
    start_date: str
    scenario: Scenario
    drift_start: str

    @property
    def simulator(self) -> Simulation:
        return Simulation(
            seed=self.seed,
            customers=self.customers,
            start_date=dt.date.fromisoformat(self.start_date),
            scenario=self.scenario,
            drift_start=dt.date.fromisoformat(self.drift_start),
        )

    def landing_file(self, table: str, date: dt.date) -> Path:
        """The one file a user drops for ``table`` on ``date``: ``<landing>/<table>/<date>.csv`` or ``.parquet``."""
        folder = Path(self.landing_root) / table
        found = [p for p in (folder / f"{date}.csv", folder / f"{date}.parquet") if p.exists()]
        if not found:
            raise FileNotFoundError(
                f"no landing file for table {table} on {date}: expected {folder / f'{date}.csv'} "
                f"or {folder / f'{date}.parquet'}"
            )
        if len(found) > 1:
            raise FileExistsError(f"two landing files for table {table} on {date}: {found[0]} and {found[1]}; keep one")
        return found[0]


class MlflowResource(dg.ConfigurableResource):
    """The MLflow tracking store and model registry: a local SQLite store under the data root by default, any
    tracking URI (an MLflow server) by setting ``PLATFORM_MLFLOW_TRACKING_URI``."""

    tracking_uri: str
    artifact_root: str  # where runs of a local (database or file) store keep their artifacts: a folder or s3://
    experiment_name: str
    model_name: str  # the one registered model; its versions carry the challenger and champion aliases
    ui_port: int = 5000  # of `mlflow ui` over a local store, for the links shown in Dagster

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "MlflowResource":
        s = settings or get_settings()
        return cls(
            tracking_uri=str(s.mlflow_tracking_uri),
            artifact_root=str(s.mlflow_artifact_root),
            experiment_name=s.mlflow_experiment,
            model_name=s.model_name,
            ui_port=s.mlflow_ui_port,
        )

    @property
    def is_server(self) -> bool:
        """A tracking server decides where artifacts go; a database or file store is told by us."""
        return self.tracking_uri.split(":", 1)[0].lower() in {"http", "https", "databricks"}

    def client(self) -> "MlflowClient":
        """Point MLflow's fluent API at this store (it is process-wide state) and return a client for it."""
        import mlflow
        from mlflow import MlflowClient

        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def experiment_id(self) -> str:
        """The experiment's id, creating it (with its artifact location, for a local store) on first use."""
        client = self.client()
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(self.experiment_name, artifact_location=self.experiment_artifact_location)

    @property
    def experiment_artifact_location(self) -> str | None:
        """Where the experiment's runs and models keep their artifacts: a folder's ``file://`` URI, or a prefix of
        the object store; None for a tracking server, which decides."""
        if self.is_server:
            return None
        if is_uri(self.artifact_root):
            return str(join(self.artifact_root, self.experiment_name))
        return (Path(self.artifact_root) / self.experiment_name).resolve().as_uri()

    @property
    def registry_lock_file(self) -> Path:
        """The file whose lock serializes alias moves unless the registry is in PostgreSQL (``ml/aliases.py``):
        beside a SQLite store's database, else beside the artifact root (both under the data root by default)."""
        if self.tracking_uri.startswith("sqlite:///"):
            return Path(self.tracking_uri.removeprefix("sqlite:///")).with_name("registry.lock")
        if is_uri(self.artifact_root):  # a lock needs a file system: this machine's, for its processes
            raise ValueError(
                f"the registry lock needs a local folder, and the artifact root {self.artifact_root} is on an object "
                "store: keep the registry in SQLite or PostgreSQL (PLATFORM_MLFLOW_TRACKING_URI)"
            )
        return Path(self.artifact_root).parent / "registry.lock"

    @property
    def ui_url(self) -> str:
        return self.tracking_uri.rstrip("/") if self.is_server else f"http://127.0.0.1:{self.ui_port}"

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def model_version_url(self, version: str | int) -> str:
        return f"{self.ui_url}/#/models/{self.model_name}/versions/{version}"


class ThresholdsResource(dg.ConfigurableResource, Thresholds):
    """The thresholds of the checks, the promotion gate and the sensor (``settings.thresholds``), as a run sees them.

    A resource rather than a read of the settings inside each asset: the values a run used are the ones its
    launchpad shows, a run may override them, and nothing reads the environment when a module is imported.
    """


class ContractResource(dg.ConfigurableResource):
    """The problem's contract (``spark_jobs.contract.Contract``): the entity, feature and label columns as the team
    declared them in its dbt project, read from the manifest when the definitions load (``problem.py``).

    A resource, so that every asset takes its names from the one object the definitions were built with, and the
    launchpad shows them."""

    declaration: dict[str, Any]  # Contract's fields, as JSON values

    @classmethod
    def of(cls, contract: Contract) -> "ContractResource":
        return cls(declaration=json.loads(contract.to_json()))

    @property
    def contract(self) -> Contract:
        return Contract.from_dict(self.declaration)


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse dbt builds the feature tables in (``settings.warehouse_path``)."""

    path: str
    # Its staging views read the lake's raw layer: a lake on an object store needs the platform's client to
    # follow them (what dbt's connections get from its plugin, ``dbt_project/plugins/lake_on_object_store.py``).
    lake_root: str = ""

    @contextmanager
    def connect(self, read_only: bool = True, attempts: int = 6) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse, read-only unless asked. DuckDB allows one writing process per file, and
        that process is dbt: runs that touch the warehouse share the ``duckdb_warehouse`` pool, and a connection
        that still meets a lock (a dbt run started by hand) waits for it, as dbt itself does (profiles.yml)."""
        for attempt in range(attempts):
            try:
                connection = duckdb.connect(self.path, read_only=read_only)
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower() or attempt == attempts - 1:
                    raise
                time.sleep(2**attempt)
        filesystem = lake.duckdb_filesystem(self.lake_root)
        if filesystem is not None:
            connection.register_filesystem(filesystem)
        try:
            yield connection
        finally:
            connection.close()


# The dbt of this Python environment: the one installed beside the interpreter, so that dbt is found (and is the
# right one) even when the virtual environment is not activated; otherwise whatever `dbt` is on PATH.
ENVIRONMENT_DBT = Path(sys.executable).with_name("dbt")  # the dbt-core package's own script
DBT_EXECUTABLE = str(ENVIRONMENT_DBT) if ENVIRONMENT_DBT.exists() else "dbt"


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` set in the process environment for the duration of the block, then restored."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class DbtResource(DbtCliResource):
    """dbt on the feature project, pointed at the same warehouse and lake as every other resource.

    The dbt project reads its paths from the ``PLATFORM_*`` environment variables in one place, ``profiles.yml``
    (the warehouse ``path`` and the lake as ``external_root``, which the sources read), which is what lets it run
    from the dbt CLI alone. From Dagster each invocation gets exactly the
    paths of these settings, whatever the process environment holds, and the vars of the days it builds.
    """

    warehouse_path: str
    lake_root: str
    artifacts_root: str  # each invocation's target folder (run results, logs) goes below it, not into the repo
    history_start_date: str  # the first day of history (the first daily partition)
    problem_dir: str  # the problem's folder, where dbt reads its models (dbt_project.yml)
    label_horizon_days: int  # the contract's: the label model's declared horizon, or the settings' override

    @cached_property
    def _cli_version(self) -> Version:
        # dagster-dbt runs `dbt --version` before a resource's first invocation, to tell dbt Core from the Fusion
        # engine: a second dbt process (about 1.5 s) per run. This environment's own dbt is the dbt-core package.
        if Path(self.dbt_executable) == ENVIRONMENT_DBT:
            return Version(importlib.metadata.version("dbt-core"))
        return DbtCliResource._cli_version.func(self)  # another dbt: ask it, as dagster-dbt does

    def cli(self, args: Sequence[str], *, target_path: Path | None = None, **kwargs: Any) -> DbtCliInvocation:
        if target_path is None:
            target_path = Path(self.artifacts_root) / f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{os.urandom(3).hex()}"
        # dbt runs in a subprocess that inherits the environment at spawn time (inside super().cli).
        paths = {
            "PLATFORM_WAREHOUSE_PATH": self.warehouse_path,
            "PLATFORM_LAKE_ROOT": self.lake_root,
            **problem_environment(Path(self.problem_dir)),
        }
        with environment(paths):
            return super().cli(args, target_path=target_path, **kwargs)

    def snapshot_vars(self, first: dt.date, last: dt.date) -> dict[str, str | int]:
        """The dbt vars of a run that builds the snapshot days ``first`` through ``last``."""
        days: dict[str, str | int] = (
            {"snapshot_date": first.isoformat()}
            if first == last
            else {"snapshot_date_from": first.isoformat(), "snapshot_date_to": last.isoformat()}
        )
        return {
            **days,
            "history_start_date": self.history_start_date,
            "label_horizon_days": self.label_horizon_days,
        }

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "DbtResource":
        from dagster_project.problem import load_problem

        s = settings or get_settings()
        problem = load_problem(s)
        return cls(
            project_dir=problem.project,
            target=s.dbt_target,
            dbt_executable=DBT_EXECUTABLE,
            warehouse_path=str(s.warehouse_path),
            lake_root=str(s.lake_root),
            artifacts_root=str(s.data_root / "dbt"),
            history_start_date=s.history_start.isoformat(),
            problem_dir=str(problem.directory),
            label_horizon_days=problem.contract.horizon_days,
        )


class SparkResource(dg.ConfigurableResource):
    """Spark with Delta Lake (``spark_jobs.session``): one session per process, started as a run that needs it
    begins (``setup_for_execution``) and shared by every asset of the run. ``master`` is ``local[*]``,
    ``spark://``, ``k8s://`` or ``sc://`` (Spark Connect). ``spark_jobs`` reads no settings: this resource is where
    the settings' values are handed to it."""

    master: str
    driver_memory: str
    jars_cache: str
    driver_java_options: str = ""
    # The lake the runs read and write: with it, a run starts the session as it begins (see setup_for_execution).
    lake_root: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> "SparkResource":
        return cls(master=settings.spark_master, driver_memory=settings.spark_driver_memory,
                   jars_cache=str(settings.jars_cache), driver_java_options=settings.spark_driver_java_options,
                   lake_root=str(settings.lake_root))  # fmt: skip

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A run that needs Spark starts the session at once, on a thread, and warms it on the offline store's
        tables: a run executed in one process (the story, ``cli run``) reaches its first Spark step only after the
        raw tables and dbt, and then finds the JVM ready. A step process of its own asks for the session at once
        and waits for the same start (``spark_jobs.session.start_in_background``)."""
        if not self.lake_root:
            return
        from spark_jobs.session import start_in_background

        the_lake = LakeResource(root=self.lake_root)
        store, paths = the_lake.object_store, lake.offline_store(the_lake.location)

        def warm_up(session: "SparkSession") -> None:
            from spark_jobs.tables import warm_up as warm_up_tables

            warm_up_tables(session, [paths.feature_snapshots])

        start_in_background(lambda: self.get_session(store), warm_up)

    def get_session(self, object_store: ObjectStore | None = None) -> "SparkSession":
        """The process's session; ``object_store``: the lake's, when it is on one (``LakeResource.object_store``),
        which the session that starts first must be given."""
        from spark_jobs.session import get_spark  # pyspark loads only when a Spark asset runs

        return get_spark(master=self.master, driver_memory=self.driver_memory, jars_cache=Path(self.jars_cache),
                         driver_java_options=self.driver_java_options, object_store=object_store)  # fmt: skip


class OnlineStoreResource(dg.ConfigurableResource):
    """The online store (``dagster_project/online_store.py``): embedded SQLite by default, Redis when configured."""

    backend: str
    sqlite_path: str
    redis_url: str
    redis_prefix: str = "online"

    @classmethod
    def from_settings(cls, settings: Settings) -> "OnlineStoreResource":
        serving = settings.serving
        return cls(
            backend=serving.online_backend.value,
            sqlite_path=str(serving.online_store_path),
            redis_url=serving.redis_url,
            redis_prefix=serving.redis_prefix,
        )

    def open(self) -> "OnlineStore":
        from dagster_project.online_store import open_store

        return open_store(
            self.backend, sqlite_path=self.sqlite_path, redis_url=self.redis_url, redis_prefix=self.redis_prefix
        )


def build_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of every code location and test, all derived from ``settings``."""
    from dagster_project.problem import load_problem

    s = settings or get_settings()
    sim = s.simulator
    return {
        "contract": ContractResource.of(load_problem(s).contract),
        "dbt": DbtResource.from_settings(s),
        "lake": LakeResource(root=str(s.lake_root)),
        "mlflow": MlflowResource.from_settings(s),
        "online_store": OnlineStoreResource.from_settings(s),
        "raw_source": RawSourceResource(
            kind=s.source,
            landing_root=str(s.landing_root),
            problem_dir=str(s.problem_dir),
            seed=sim.seed,
            customers=sim.customers,
            start_date=s.history_start.isoformat(),
            scenario=sim.scenario,
            drift_start=sim.drift_start.isoformat(),
        ),
        "spark": SparkResource.from_settings(s),
        "thresholds": ThresholdsResource(**s.thresholds.model_dump()),
        "warehouse": WarehouseResource(path=str(s.warehouse_path), lake_root=str(s.lake_root)),
    }
