"""The offline store's jobs on a real standalone cluster and over a real Spark Connect server give what they give
locally: the same snapshot rows, the same training set (its content fingerprint), the same maintenance.

The same plan (snapshots of five days in two commits, a point-in-time training set and its exact rebuild, then
OPTIMIZE and VACUUM) runs three times on a small churn world, each in its own lake: in this process on the suite's
``local[2]`` session, then by a driver subprocess (``jobs_driver.py``) on ``spark://`` and on ``sc://``. The
tables are compared here, read with delta-rs, so no Spark of the test process judges them.
"""

import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from churn_world import START, ChurnWorld, days
from deltalake import DeltaTable
from jobs_driver import run_steps
from pyspark.sql import SparkSession
from s3_server import S3Server
from spark_cluster import SparkCluster, SparkConnectServer

from dagster_project.lake import partition_path, table_dir
from dagster_project.settings import Settings
from spark_jobs.object_store import bucket_key, join, location_argument
from spark_jobs.paths import OfflineStorePaths

pytestmark = [pytest.mark.spark, pytest.mark.scale_out]

WORLD = ChurnWorld(customers=300, horizon=3)
DAYS = days(START, 5)
# Days 1-3 in one commit, then days 3-5 in the next: day 3's first file is left behind for VACUUM to delete.
FIRST, SECOND = DAYS[:3], DAYS[2:]
DRIVER = Path(__file__).with_name("jobs_driver.py")
REPO = Path(__file__).parents[2]


@dataclass(frozen=True)
class Run:
    """One run of the plan: its store and what each step printed and took."""

    store: OfflineStorePaths
    report: dict
    storage_options: dict[str, str] | None = None  # delta-rs's, for a store on the object store

    def step(self, name: str) -> dict:
        return next(s for s in self.report["steps"] if s["name"] == name)

    def snapshot_rows(self) -> pa.Table:
        table = DeltaTable(str(self.store.feature_snapshots), storage_options=self.storage_options)
        return _sorted(table.to_pyarrow_table(), ["snapshot_date", "customer_id"])

    def training_rows(self) -> pa.Table:
        table = DeltaTable(str(self.store.training_set), storage_options=self.storage_options)
        return _sorted(table.to_pyarrow_table(), ["prediction_time", "customer_id"])

    def maintenance(self) -> dict[str, dict]:
        return {r["table"]: r for r in json.loads(self.step("maintenance")["stdout"])}

    def seconds(self) -> dict[str, float]:
        return {"session": self.report["session_seconds"], **{s["name"]: s["seconds"] for s in self.report["steps"]}}


def _sorted(table: pa.Table, keys: list[str]) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in keys])


def plan(root: Path, session: list[str], s3: S3Server | None = None) -> dict:
    """Write the churn world's exports under ``root`` (and copy them to a prefix of ``s3``'s bucket, if given)
    and return the plan that runs the jobs on them, in that lake."""
    local_lake = root / "lake"
    WORLD.write_feature_exports(local_lake, DAYS)
    WORLD.write_labels(local_lake, [d + dt.timedelta(days=WORLD.horizon) for d in DAYS])
    lake: str | Path = local_lake
    if s3 is not None:
        lake = s3.uri(root.name, "lake")
        pafs.copy_files(str(local_lake), bucket_key(lake), destination_filesystem=s3.object_store().filesystem())
    contract = root / "contract.json"
    contract.write_text(WORLD.contract.to_json())

    def at(path: Path) -> str:  # a file of the local lake, in the lake the jobs run on
        return str(join(lake, *path.relative_to(local_lake).parts))

    store = ["--store-root", str(join(lake, "offline_store"))]
    labels = ["--labels", at(table_dir(local_lake, "features", WORLD.contract.labels_model))]

    def snapshot(chosen: list[dt.date]) -> list[str]:
        sources = {d: at(partition_path(local_lake, "features", WORLD.contract.features_model, d)) for d in chosen}
        pairs = [(f"--date={d}", f"--source={source}") for d, source in sources.items()]
        return ["--contract", str(contract), *store, *[flag for pair in pairs for flag in pair]]

    return {
        "store_root": str(join(lake, "offline_store")),
        "session": session,
        "steps": [
            {"name": "snapshots_1", "job": "feature_snapshots", "argv": snapshot(FIRST)},
            {"name": "snapshots_2", "job": "feature_snapshots", "argv": snapshot(SECOND)},
            {"name": "training_set", "job": "training_set",
             "argv": ["--contract", str(contract), *store, *labels, "--churn-horizon-days", str(WORLD.horizon)]},
            {"name": "rebuild", "job": "training_set",
             "argv": ["--contract", str(contract), *store, *labels, "--rebuild", "0"]},
            {"name": "maintenance", "job": "maintenance", "argv": [*store, "--min-retention-hours", "0"]},
        ],
    }  # fmt: skip


def session_flags(master: str) -> list[str]:
    return ["--master", master, "--driver-memory", "1g", "--jars-cache", str(Settings().jars_cache)]


@pytest.fixture(scope="module")
def local_run(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The plan in this process, on the suite's ``local[2]`` session (every job's ``get_spark`` joins it)."""
    the_plan = plan(tmp_path_factory.mktemp("local"), session_flags("local[2]"))
    report = {"session_seconds": 0.0, "steps": run_steps(the_plan["steps"], the_plan["session"])}
    return Run(OfflineStorePaths(store_root=Path(the_plan["store_root"])), report)


def run_driver(root: Path, master: str, env: dict[str, str], s3: S3Server | None = None) -> Run:
    """The plan by ``jobs_driver.py`` in a subprocess (its own SparkContext, or none over Connect)."""
    session = session_flags(master) + (["--s3-endpoint-url", s3.endpoint_url] if s3 is not None else [])
    the_plan = plan(root, session, s3)
    if s3 is not None:
        env = {**env, **s3.aws_env()}  # the keys as AWS's clients find them: no secret on a command line
    plan_file, report_file = root / "plan.json", root / "report.json"
    plan_file.write_text(json.dumps(the_plan))
    pythonpath = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(DRIVER), str(plan_file), str(report_file)],
                          env={**env, "PYTHONPATH": pythonpath},
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0 and report_file.exists(), f"the driver on {master} failed:\n{done.stderr[-6000:]}"
    report = json.loads(report_file.read_text())
    report["process_seconds"] = round(time.monotonic() - started, 3)
    store = OfflineStorePaths(store_root=location_argument(the_plan["store_root"]))
    return Run(store, report, s3.object_store().delta_options() if s3 is not None else None)


def assert_same_results(run: Run, local: Run) -> None:
    for name in ("snapshots_1", "snapshots_2", "training_set", "rebuild", "maintenance"):
        assert run.step(name)["exit"] == 0 and local.step(name)["exit"] == 0, name
    assert run.snapshot_rows().num_rows == len(DAYS) * WORLD.customers
    assert run.snapshot_rows().equals(local.snapshot_rows())  # exactly the same rows, values and types
    built, built_here = json.loads(run.step("training_set")["stdout"]), json.loads(local.step("training_set")["stdout"])
    assert built["rows"] == len(DAYS) * WORLD.customers and built["labels_without_snapshot"] == 0
    assert built["fingerprint"] == built_here["fingerprint"]
    assert run.training_rows().equals(local.training_rows())
    assert "identical" in run.step("rebuild")["stdout"]
    report, report_here = run.maintenance(), local.maintenance()
    for table in ("feature_snapshots", "training_set"):
        done, done_here = report[table], report_here[table]
        assert done["protected_readable"], table
        same = ("latest_version", "properties_set", "files_compacted", "files_vacuumed")
        assert {k: done[k] for k in same} == {k: done_here[k] for k in same}, table
    assert report["feature_snapshots"]["files_vacuumed"] == 1  # day 3's first file: VACUUM really deleted it
    assert run.snapshot_rows().equals(local.snapshot_rows())  # and the rows are still the same


def test_the_jobs_on_a_standalone_cluster_give_what_they_give_locally(
    spark_cluster: SparkCluster, local_run: Run, tmp_path: Path
):
    run = run_driver(tmp_path, spark_cluster.master_url, spark_cluster.env)
    print(f"\nlocal {local_run.seconds()}\ncluster {run.seconds()} (process {run.report['process_seconds']} s)")
    assert_same_results(run, local_run)

    # The work ran on the cluster's executors: the driver says so, and so do the master and both workers.
    ran_on = run.report["ran_on"]
    assert ran_on["master"] == spark_cluster.master_url
    state = spark_cluster.state()
    app = next(a for a in state["completedapps"] + state["activeapps"] if a["id"] == ran_on["application_id"])
    assert app["cores"] == 2
    executors_per_worker = [
        [e for e in w["executors"] + w["finishedexecutors"] if e["appid"] == ran_on["application_id"]]
        for w in spark_cluster.worker_states()
    ]
    assert all(len(found) == 1 for found in executors_per_worker), executors_per_worker


def test_the_jobs_over_spark_connect_give_what_they_give_locally(
    spark_connect_server: SparkConnectServer, local_run: Run, tmp_path: Path
):
    run = run_driver(tmp_path, spark_connect_server.url, spark_connect_server.env)
    print(f"\nlocal {local_run.seconds()}\nconnect {run.seconds()} (process {run.report['process_seconds']} s)")
    assert_same_results(run, local_run)

    ran_on = run.report["ran_on"]
    assert ran_on["kind"] == "connect" and ran_on["session_class"].startswith("pyspark.sql.connect.")
    assert not ran_on["jvm_in_client"]  # the plans went to the server: the client never started a JVM


def test_the_jobs_on_the_cluster_with_their_store_and_inputs_on_object_storage_give_what_they_give_locally(
    spark_cluster: SparkCluster, s3_server: S3Server, local_run: Run, tmp_path: Path
):
    """The same plan on the standalone cluster, with the exports, the labels and the store under an ``s3://``
    prefix of a real S3 API server: no file system shared by the driver and the executors, only the bucket. Spark
    reaches it through s3a (the cached hadoop-aws jars, shipped to the executors), nothing of it on this disk."""
    run = run_driver(tmp_path, spark_cluster.master_url, spark_cluster.env, s3=s3_server)
    print(f"\nlocal {local_run.seconds()}\nobject store {run.seconds()} (process {run.report['process_seconds']} s)")
    assert_same_results(run, local_run)
    prefix = f"{tmp_path.name}/lake/offline_store/"
    written = s3_server.keys(prefix)
    assert any(key.startswith(f"{prefix}feature_snapshots/_delta_log/") for key in written)
    assert any(key.startswith(f"{prefix}training_set/_delta_log/") for key in written)
    assert not (tmp_path / "lake" / "offline_store").exists()  # the store is in the bucket only
    executors = [e for w in spark_cluster.worker_states() for e in w["executors"] + w["finishedexecutors"]
                 if e["appid"] == run.report["ran_on"]["application_id"]]  # fmt: skip
    assert len(executors) == 2, executors  # the executors read and wrote the bucket
