"""Fixtures shared by the whole suite. Every test gets its own data root: nothing writes into the repo's data/."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# PostgreSQL-backed Dagster and MLflow with one night run on them, shared by tests/deploy and tests/ui.
from deployed_platform import deployed_platform, postgres_server  # noqa: F401  (fixtures)
from redis_server import redis_server, redis_url  # noqa: F401  (fixtures: a real redis-server per worker)
from s3_server import s3_server  # noqa: F401  (fixture: a real S3 API server, moto's, on loopback)
from spark_cluster import spark_cluster, spark_connect_server  # noqa: F401  (fixtures: a standalone cluster, Connect)

from dagster_project.resources import MlflowResource
from dagster_project.settings import Settings, get_settings

# The suite's Spark drivers run short jobs on small data: the JIT's quick compiler alone takes a quarter off them
# (the optimizing one spends the 2 cores on code that runs for seconds). Every process the tests start inherits it.
TEST_DRIVER_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"
WORLD_CHAMPION_DAYS = 60  # snapshot days the shared churn-world champion is trained on
# The suite runs on two pytest-xdist workers (`make test`). The tests of the deployed platform share one PostgreSQL
# server and one deployed night (session fixtures): they run on the same worker, so that work is done once.
DEPLOYED_GROUP = "deployed_platform"
DEPLOYED_FOLDERS = ("deploy", "ui")


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PLATFORM_SPARK_DRIVER_JAVA_OPTIONS", TEST_DRIVER_JAVA_OPTIONS)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups to name the tests
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).parent.name in DEPLOYED_FOLDERS:
            item.add_marker(pytest.mark.xdist_group(DEPLOYED_GROUP))
    # The end-to-end scenarios (minutes each) first: the workers hand out tests in this order, so a long one taken
    # last would leave the other worker idle while it runs. The short ones fill the end. (Stable: the order is
    # otherwise the collection's, and the same on every worker.)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """Fail fast when xdist's ``loadgroup`` no longer groups (a pytest whose test ids xdist cannot rename): the
    deployed platform's tests would be spread over the workers, and each worker would start it again."""
    if getattr(node, "config", None) is None or node.config.getoption("dist") != "loadgroup":
        return
    ungrouped = [i for i in ids if Path(i.split("::")[0]).parent.name in DEPLOYED_FOLDERS and "@" not in i]
    if ungrouped:
        raise pytest.UsageError(
            f"pytest-xdist's loadgroup did not group {len(ungrouped)} tests (e.g. {ungrouped[0]}): "
            f"pytest {pytest.__version__} and this pytest-xdist do not work together"
        )


@pytest.fixture(autouse=True)
def _settings_read_per_test() -> Iterator[None]:
    """The settings are cached per process: a test that changes the environment must not leave its settings to the
    next test on the same worker (a test of another example would load that example's definitions)."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data root for one test, in force through the environment as the platform reads it."""
    root = tmp_path / "data"
    monkeypatch.setenv("PLATFORM_DATA_ROOT", str(root))
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


@pytest.fixture
def settings(data_root: Path) -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store with its schema migrated, made once per session (migrations take seconds)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{path}", (path.parent / "artifacts").as_uri())
    return path


@pytest.fixture
def mlflow_store(settings: Settings, mlflow_template_db: Path) -> MlflowResource:
    """The test's own MLflow tracking store and registry (SQLite and artifacts under its data root), empty."""
    store = MlflowResource.from_settings(settings)
    db = Path(store.tracking_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mlflow_template_db, db)
    return store


@pytest.fixture(scope="session")
def spark():
    """One local Spark session with Delta for the whole run (it takes seconds to start); the same one that
    ``spark_jobs.session.get_spark`` (and so Dagster's ``SparkResource``) returns in this process."""
    from spark_jobs.session import get_spark

    settings = Settings()  # the jar cache and driver memory in force (the cache outlives any data root)
    return get_spark(master="local[2]", driver_memory=settings.spark_driver_memory, jars_cache=settings.jars_cache,
                     extra_conf={"spark.ui.enabled": "false"},
                     driver_java_options=settings.spark_driver_java_options)  # fmt: skip


@pytest.fixture(scope="session")
def world_champion(tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path) -> MlflowResource:
    """An MLflow store (its own folder) whose champion was trained on the churn world of ``tests/churn_world.py``
    over its first 60 days. Shared by the scoring and monitoring tests: read it, never move its aliases."""
    from churn_world import START, ChurnWorld, days, register_champion

    root = tmp_path_factory.mktemp("world_champion")
    return register_champion(root, mlflow_template_db, ChurnWorld(), days(START, WORLD_CHAMPION_DAYS))
