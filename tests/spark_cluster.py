"""A real Spark standalone cluster and a real Spark Connect server for the tests, one of each per test session.

Both run from the installed pyspark distribution's own classes (``bin/spark-class``, ``bin/spark-submit``), as
``docker-compose.yml`` runs them, on 127.0.0.1 and free ports, with their logs in a temporary folder:

* ``spark_cluster``: one master and two workers of one core each (the machine has two); the master's REST
  submission server is off, the web UIs answer on free ports (their ``/json/`` pages tell which applications ran,
  and on which workers' executors).
* ``spark_connect_server``: a ``SparkConnectServer`` with Delta on its class path from the cached jars
  (``spark_jobs.session.connect_server_arguments``: ``--jars``, no download), in local mode.

Only one SparkContext lives in a Python process, and the suite's own (``local[2]``) already does: a driver for
these runs in a subprocess (``tests/offline_store/jobs_driver.py``), as a deployment runs the jobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from deployed_platform import free_port

WORKERS = 2
WORKER_CORES = 1
WORKER_MEMORY = "768m"
EXECUTOR_MEMORY = "512m"  # fits a worker; Spark's default (1g) would not, and the apps would wait for ever
START_TIMEOUT_S = 120  # JVMs start slowly on two busy cores
CONNECT_SERVER_MASTER = "local[2]"
SMALL_CLUSTER_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.databricks.delta.snapshotPartitions": "4",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",  # VACUUM's listing job
}


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _spark_env(folder: Path, conf_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_HOME": str(spark_home()),
        "SPARK_CONF_DIR": str(conf_dir),
        "SPARK_LOG_DIR": str(folder / "logs"),
        "SPARK_LOCAL_IP": "127.0.0.1",  # every daemon, driver and executor binds and advertises the loopback
        "PYSPARK_PYTHON": sys.executable,  # the executors' Python workers: this interpreter, with its packages
    }


def _write_defaults(conf_dir: Path, properties: dict[str, str]) -> None:
    """``spark-defaults.conf``: read by the daemons and by every ``spark-submit`` (so by every driver) that names
    this ``SPARK_CONF_DIR``, as a cluster's own defaults are."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "spark-defaults.conf").write_text("".join(f"{k} {v}\n" for k, v in properties.items()))


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _wait(ready, what: str, processes: list[subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        for process in processes:
            assert process.poll() is None, f"{what}: a process exited with {process.returncode}; logs in {logs}"
        assert time.monotonic() < deadline, f"{what} not ready within {START_TIMEOUT_S} s; logs in {logs}"
        time.sleep(0.25)


def _stop(processes: list[subprocess.Popen]) -> None:
    """Stop the daemons we started, each by its own process (a worker stops its executors on the way out)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass(frozen=True)
class SparkCluster:
    """A running standalone cluster: its master URL, its web UIs' ports, the environment its drivers need."""

    port: int
    ui_port: int
    worker_ui_ports: list[int]
    folder: Path
    env: dict[str, str] = field(repr=False)
    pids: list[int] = field(default_factory=list)  # the master's and the workers' (executors are the workers' children)

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def state(self) -> dict:
        """The master's own account (``/json/``): its workers, and the applications running and finished."""
        return _get_json(f"http://127.0.0.1:{self.ui_port}/json/")

    @property
    def driver_env(self) -> dict[str, str]:
        """What a driver process adds to its environment to use this cluster's defaults (executor memory, sizes)
        and its loopback address."""
        return {k: self.env[k] for k in ("SPARK_CONF_DIR", "SPARK_LOCAL_IP", "PYSPARK_PYTHON")}

    def worker_states(self) -> list[dict]:
        """Each worker's account (``/json/``): among it the executors it ran, with their application."""
        return [_get_json(f"http://127.0.0.1:{port}/json/") for port in self.worker_ui_ports]


@contextlib.contextmanager
def standalone_cluster(
    workers: int = WORKERS,
    worker_cores: int = WORKER_CORES,
    worker_memory: str = WORKER_MEMORY,
    executor_memory: str = EXECUTOR_MEMORY,
) -> Iterator[SparkCluster]:
    """A master and ``workers`` workers from pyspark's ``spark-class``, on 127.0.0.1; stopped on the way out."""
    folder = Path(tempfile.mkdtemp(prefix="platform-spark-cluster-"))
    conf_dir = folder / "conf"
    _write_defaults(
        conf_dir,
        {
            "spark.master.rest.enabled": "false",  # no submission server (it would take the fixed port 6066)
            "spark.executor.memory": executor_memory,
            # Sized for two cores, as the session builder sizes local[N] (spark_jobs.session.session_conf): the
            # defaults (200 shuffle partitions, 50 for Delta's log state) are for clusters of hundreds of cores.
            **SMALL_CLUSTER_CONF,
        },
    )
    env = _spark_env(folder, conf_dir)
    spark_class = str(spark_home() / "bin" / "spark-class")
    port, ui_port = free_port(), free_port()
    worker_ui_ports = [free_port() for _ in range(workers)]
    master_cmd = [spark_class, "org.apache.spark.deploy.master.Master",
                  "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)]  # fmt: skip
    processes = [_start(master_cmd, env, folder / "master.log")]
    cluster = SparkCluster(port, ui_port, worker_ui_ports, folder, env)
    try:
        for i, worker_ui_port in enumerate(worker_ui_ports):
            worker_cmd = [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                          "--cores", str(worker_cores), "--memory", worker_memory,
                          "--webui-port", str(worker_ui_port), "--work-dir", str(folder / f"work-{i}"),
                          cluster.master_url]  # fmt: skip
            processes.append(_start(worker_cmd, env, folder / f"worker-{i}.log"))
        cluster.pids.extend(process.pid for process in processes)
        _wait(lambda: cluster.state()["aliveworkers"] == workers, "the standalone cluster", processes, folder)
        yield cluster
    finally:
        _stop(processes[::-1])  # the workers first, then the master
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def spark_cluster() -> Iterator[SparkCluster]:
    """One master and two one-core workers, for the whole test session."""
    with standalone_cluster() as cluster:
        yield cluster


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@dataclass(frozen=True)
class SparkConnectServer:
    port: int
    folder: Path
    env: dict[str, str] = field(repr=False)
    pids: list[int] = field(default_factory=list)  # the server's JVM (spark-submit's process)

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "connect-server.log"


@contextlib.contextmanager
def connect_server(master: str = CONNECT_SERVER_MASTER, driver_memory: str = "1g") -> Iterator[SparkConnectServer]:
    """A Spark Connect server with Delta from the cached jars, as ``python -m spark_jobs.session
    --connect-server-conf --jars-cache DIR`` prints its arguments, on a free port of 127.0.0.1; stopped on exit."""
    from dagster_project.settings import Settings
    from spark_jobs.session import connect_server_arguments

    folder = Path(tempfile.mkdtemp(prefix="platform-spark-connect-"))
    conf_dir = folder / "conf"
    _write_defaults(conf_dir, SMALL_CLUSTER_CONF)  # a local[2] server: sized for two cores too
    env = _spark_env(folder, conf_dir)
    port = free_port()
    cmd = [
        str(spark_home() / "bin" / "spark-submit"),
        "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--name", "platform-connect-server",
        "--master", master,
        "--driver-memory", driver_memory,
        *connect_server_arguments(Settings().jars_cache),
        "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf", f"spark.connect.grpc.binding.port={port}",
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.driver.host=127.0.0.1",
        "--conf", "spark.driver.bindAddress=127.0.0.1",
    ]  # fmt: skip
    server = SparkConnectServer(port, folder, env)
    process = _start(cmd, env, server.log)
    server.pids.append(process.pid)
    try:
        _wait(lambda: _listening(port), "the Spark Connect server", [process], folder)
        yield server
    finally:
        _stop([process])
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def spark_connect_server() -> Iterator[SparkConnectServer]:
    """One Connect server for the whole test session."""
    with connect_server() as server:
        yield server


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
