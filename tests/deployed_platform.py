"""The platform as deployed, on this machine: a real PostgreSQL server (Debian's packages) holding the Dagster
instance of ``deploy/dagster.yaml`` and MLflow's backend store, configured by environment variables only, and one
nightly partition run end to end on it. Shared by ``tests/deploy`` (what landed in Postgres) and ``tests/ui`` (the
UI over that run); the fixtures are registered in ``tests/conftest.py``.

The run, in the order an operator would go:

1. a champion: the ``retrain`` job's model assets (``ml/churn_model`` then the promotion gate ``ml/champion_model``)
   through ``dagster asset materialize``, on a training set in the offline store's contract. The training set is
   the synthetic churn world's (``tests/churn_world.py``): months of matured labels would take too long to
   simulate here, and the Spark job that builds training sets is tested on its own;
2. one night: ``dagster job execute -j nightly_pipeline`` for the first daily partition, every asset of the job
   from the raw tables to the scores and the drift report (what the nightly schedule launches).
"""

import dataclasses
import datetime as dt
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagster_project.settings import REPO_ROOT

APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
DAGSTER_DB = "dagster"
MLFLOW_DB = "mlflow"
NIGHT = dt.date(2025, 1, 1)  # the first daily partition: it needs no earlier day
# Small and quick, the same code paths as production. The churn world's horizon, and so the settings'.
CUSTOMERS = 300
HORIZON_DAYS = 7
TRAINING_SNAPSHOT_DAYS = 30
TRAINING_CONFIG = {"max_iter": 50, "validation_days": 7, "importance_sample_rows": 300, "importance_repeats": 2,
                   "reference_sample_rows": 1000}  # fmt: skip
STEP_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL


def _postgres_bindir() -> Path | None:
    """The newest installed server's binaries (Debian keeps them out of PATH, in /usr/lib/postgresql/<v>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _install_postgres() -> str | None:
    """Install Debian's PostgreSQL server; the reason it could not be installed, or None."""
    if not shutil.which("apt-get"):
        return "PostgreSQL is not installed and this is not a Debian-like system (no apt-get)"
    if os.geteuid() != 0:
        return "PostgreSQL is not installed and installing it needs root (sudo apt-get install -y postgresql)"
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"]
    done = subprocess.run(install, capture_output=True, text=True, env=APT_ENV, timeout=900)
    if done.returncode != 0:  # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=APT_ENV, timeout=900)
        done = subprocess.run(install, capture_output=True, text=True, env=APT_ENV, timeout=900)
    return None if done.returncode == 0 else f"apt-get install postgresql failed: {done.stderr[-500:]}"


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    bindir: Path

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def environment(self) -> dict[str, str]:
        """libpq's variables, for psql and the deployment's scripts."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGPASSWORD": self.password}

    def psql(self, database: str, sql: str) -> str:
        """Run ``sql`` with psql, as an operator would; its unaligned output."""
        done = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql],
            capture_output=True, text=True, env={**os.environ, **self.environment()}, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own, password-authenticated like production, on a free port of 127.0.0.1.

    Installed from Debian's packages when missing (as root). The cluster lives in a temporary folder owned by the
    ``postgres`` account when the tests run as root (PostgreSQL refuses to run as root), and is stopped and
    deleted afterwards.
    """
    bindir = _postgres_bindir()
    if bindir is None:
        reason = _install_postgres()
        bindir = _postgres_bindir()
        if bindir is None:
            pytest.skip(reason or "PostgreSQL was installed but its initdb was not found")

    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="platform-pg-"))  # directly under /tmp: the server's account reaches it
    pwfile = root / "pwfile"
    password = "platform-test-" + os.urandom(6).hex()
    pwfile.write_text(password)
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")  # created by Debian's package
        except KeyError:
            pytest.skip("running as root without a `postgres` account to run the server as")
        for path in (root, pwfile):
            os.chown(path, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    port = free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"

    # fsync off: a throwaway cluster, and the tests' time matters more than crash safety here.
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "platform", "--auth=scram-sha-256",
            f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8")  # fmt: skip
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w",
            "-t", "60", "start")  # fmt: skip
        psql = bindir / "psql" if (bindir / "psql").exists() else Path(shutil.which("psql") or "psql")
        yield PostgresServer("127.0.0.1", port, "platform", password, psql.parent)
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# The platform on it


@dataclasses.dataclass(frozen=True)
class DeployedPlatform:
    server: PostgresServer
    data_root: Path
    dagster_home: Path
    env: dict[str, str]  # the whole environment the platform ran with: PLATFORM_*, DAGSTER_*, nothing else set
    night: dt.date
    logs: dict[str, str]  # each step's duration and output

    @property
    def lake_root(self) -> Path:
        return self.data_root / "lake"


def _create_databases(server: PostgresServer) -> None:
    """Dagster's database as the postgres image creates $POSTGRES_DB; MLflow's by the deployment's own script."""
    server.psql("postgres", f"create database {DAGSTER_DB}")
    env = {**os.environ, **server.environment(),
           "POSTGRES_USER": server.user, "POSTGRES_DB": DAGSTER_DB, "MLFLOW_POSTGRES_DB": MLFLOW_DB}  # fmt: skip
    script = REPO_ROOT / "deploy" / "postgres" / "create-mlflow-database.sh"
    for _ in range(2):  # the second time finds the database there: the script is idempotent
        done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


def platform_environment(server: PostgresServer, data_root: Path, dagster_home: Path) -> dict[str, str]:
    """Everything that points the project at the services: environment variables only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLATFORM_", "DAGSTER_", "MLFLOW_"))}
    env.update(
        {
            "PLATFORM_DATA_ROOT": str(data_root),
            "PLATFORM_DAGSTER_HOME": str(dagster_home),
            "DAGSTER_HOME": str(dagster_home),
            "DAGSTER_POSTGRES_HOST": server.host,
            "DAGSTER_POSTGRES_PORT": str(server.port),
            "DAGSTER_POSTGRES_USER": server.user,
            "DAGSTER_POSTGRES_PASSWORD": server.password,
            "DAGSTER_POSTGRES_DB": DAGSTER_DB,
            "PLATFORM_MLFLOW_TRACKING_URI": server.url(MLFLOW_DB, driver="postgresql+psycopg2"),
            "PLATFORM_SIMULATOR__CUSTOMERS": str(CUSTOMERS),
            "PLATFORM_THRESHOLDS__CHURN_HORIZON_DAYS": str(HORIZON_DAYS),
            # The suite's JVM flags (tests/conftest.py), not a setting of the deployment.
            "PLATFORM_SPARK_DRIVER_JAVA_OPTIONS": os.environ.get("PLATFORM_SPARK_DRIVER_JAVA_OPTIONS", ""),
        }
    )
    return env


def _step(name: str, command: list[str], env: dict[str, str], logs: dict[str, str]) -> None:
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    logs[name] = f"[{time.monotonic() - started:.1f} s]\n{done.stdout}{done.stderr}"
    assert done.returncode == 0, f"{name} failed ({' '.join(command)}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


@pytest.fixture(scope="session")
def deployed_platform(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> DeployedPlatform:
    """A champion trained and promoted, then one night run end to end, all on PostgreSQL (see the module doc)."""
    from churn_world import START, ChurnWorld, days

    _create_databases(postgres_server)
    root = tmp_path_factory.mktemp("deployed")
    data_root, home = root / "data", root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = platform_environment(postgres_server, data_root, home)
    logs: dict[str, str] = {}
    bin_dir = Path(sys.executable).parent

    from dagster_project.problem import load_problem
    from dagster_project.settings import Settings

    ChurnWorld(customers=1000, horizon=HORIZON_DAYS).write_training_set(
        data_root / "lake",
        days(START - dt.timedelta(days=120), TRAINING_SNAPSHOT_DAYS),
        declared=load_problem(Settings()).contract,  # the deployed definitions train on the default problem's
    )
    # Every step in the run's own process, as the main command runs them: the default executor would start a
    # process per step, each loading the definitions (and a Spark session) again, which triples the test's time.
    in_process = {"execution": {"config": {"in_process": {}}}}
    retrain_config = {**in_process, "ops": {"churn_model": {"config": TRAINING_CONFIG}}}
    _step("retrain", [str(bin_dir / "dagster"), "asset", "materialize", "-m", "dagster_project.definitions",
                      "--select", "ml/churn_model,ml/champion_model", "--config-json", json.dumps(retrain_config)],
          env, logs)  # fmt: skip
    night_config = root / "night.yaml"
    night_config.write_text(json.dumps(in_process))  # JSON is YAML
    _step("night", [str(bin_dir / "dagster"), "job", "execute", "-m", "dagster_project.definitions",
                    "-j", "nightly_pipeline", "-c", str(night_config),
                    "--tags", json.dumps({"dagster/partition": NIGHT.isoformat()})], env, logs)  # fmt: skip
    print("deployed platform:", ", ".join(f"{name} {log.split(']', 1)[0][1:]}" for name, log in logs.items()))
    return DeployedPlatform(postgres_server, data_root, home, env, NIGHT, logs)
