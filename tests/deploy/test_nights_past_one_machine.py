"""Whole nights of the deployed platform past one process and one machine, by configuration only:

* the night again, with ``PLATFORM_SPARK_MASTER`` pointing at a real standalone cluster (``spark_cluster``): the
  offline store's snapshot of the night is written by the cluster's executors, and every table the night writes
  comes out as the local night (``local[*]``, the ``deployed_platform`` fixture) wrote it;
* the night again with the lake on an S3 API server (``PLATFORM_LAKE_ROOT=s3://…`` and AWS's variables, moto's
  server on loopback): every layer reads and writes the bucket (raw, quarantine, dbt's sources, exports, the Delta
  snapshots through s3a, the scores through delta-rs, the reports), and the night's tables come out as the local
  night's;
* two nights of different partitions at once on the Postgres-backed instance, each step in its own process (the
  default multiprocess executor, as the deployment's runs execute): both succeed, no two steps of the DuckDB
  warehouse's pool ever run at the same time across the runs (DuckDB allows one writer), nor two of the offline
  store's (one writing Spark driver per Delta table), and the night that ran before comes out the same.

Both run the real ``dagster job execute`` of an operator, with the deployment's environment and nothing else.
"""

import datetime as dt
import itertools
import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deployed_platform import STEP_TIMEOUT_S, DeployedPlatform
from s3_server import S3Server
from spark_cluster import SparkCluster

from dagster_project import lake
from dagster_project.defs.features.assets import WAREHOUSE_POOL
from dagster_project.defs.offline_store.assets import OFFLINE_STORE_POOL
from dagster_project.settings import REPO_ROOT

pytestmark = [pytest.mark.spark, pytest.mark.scale_out]


@dataclass(frozen=True)
class NightTables:
    """What a night leaves in the lake, read with delta-rs and pyarrow (no Spark of this process)."""

    snapshot: pa.Table
    scores: pa.Table

    @classmethod
    def read(cls, lake_root: lake.Location, night: dt.date) -> "NightTables":
        from dagster_project.defs.scoring.scores import read_scores_table
        from dagster_project.problem import load_problem
        from dagster_project.settings import Settings

        contract = load_problem(Settings()).contract  # the deployed definitions' problem: the default one
        path = lake.offline_store(lake_root).feature_snapshots
        snapshots = lake.delta_to_arrow(lake.delta_table(path), path)
        snapshot = snapshots.filter(pc.equal(snapshots[contract.as_of], pa.scalar(night, pa.date32())))
        scores = read_scores_table(lake_root, night, contract).drop_columns(["scored_at"])  # the time it ran
        return cls(_sorted(snapshot), _sorted(scores))


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(name, "ascending") for name in table.column_names])


@dataclass
class NightProcess:
    """A ``dagster job execute`` of the nightly job for one night, its output in a file."""

    night: dt.date
    process: subprocess.Popen
    log: Path

    def wait(self) -> str:
        try:
            self.process.wait(timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()  # never left behind, holding a pool slot
            self.process.wait()
        output = self.log.read_text()
        assert self.process.returncode == 0, f"the night of {self.night} failed:\n{output[-6000:]}"
        return output


def execute_night(platform: DeployedPlatform, night: dt.date, env: dict[str, str], in_process: bool) -> NightProcess:
    """Start ``dagster job execute`` of the nightly job for ``night`` (not awaited)."""
    command = [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "dagster_project.definitions",
               "-j", "nightly_pipeline", "--tags", json.dumps({"dagster/partition": night.isoformat()})]  # fmt: skip
    if in_process:
        config = platform.dagster_home.parent / "night-in-process.yaml"
        config.write_text(json.dumps({"execution": {"config": {"in_process": {}}}}))
        command += ["-c", str(config)]
    log = platform.dagster_home.parent / f"night-{night}-{time.time_ns()}.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return NightProcess(night, process, log)


@pytest.fixture(scope="module")
def night_before(deployed_platform: DeployedPlatform) -> NightTables:
    """The deployed night's tables as the local night wrote them, read before any test here runs it again."""
    return NightTables.read(deployed_platform.lake_root, deployed_platform.night)


@pytest.fixture
def instance(deployed_platform: DeployedPlatform, monkeypatch: pytest.MonkeyPatch):
    for key, value in deployed_platform.env.items():
        if key.startswith(("PLATFORM_", "DAGSTER_")):
            monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(deployed_platform.dagster_home)) as instance:
        yield instance


def _latest_run(instance: dg.DagsterInstance, night: dt.date) -> dg.DagsterRun:
    runs = instance.get_runs(dg.RunsFilter(job_name="nightly_pipeline", tags={"dagster/partition": night.isoformat()}))
    return runs[0]  # newest first


def test_a_whole_night_on_a_standalone_cluster_writes_what_the_local_night_wrote(
    deployed_platform: DeployedPlatform,
    spark_cluster: SparkCluster,
    night_before: NightTables,
    instance: dg.DagsterInstance,
) -> None:
    from spark_jobs.session import APP_NAME

    apps_before = {app["id"] for app in spark_cluster.state()["completedapps"] + spark_cluster.state()["activeapps"]}
    # The deployment's environment, with the cluster's master and its Spark defaults (executor memory, the sizes of
    # a two-core cluster): what an operator sets, nothing in the code.
    env = {**deployed_platform.env, "PLATFORM_SPARK_MASTER": spark_cluster.master_url,
           **spark_cluster.driver_env}  # fmt: skip
    started = time.monotonic()
    execute_night(deployed_platform, deployed_platform.night, env, in_process=True).wait()
    local = deployed_platform.logs["night"].split("]")[0][1:]
    print(f"\nthe night on the cluster: {time.monotonic() - started:.1f} s; locally {local}")

    run = _latest_run(instance, deployed_platform.night)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    # The snapshot step's session was an application of the cluster, with an executor on each worker.
    state = spark_cluster.state()
    new = [app for app in state["completedapps"] + state["activeapps"] if app["id"] not in apps_before]
    assert [app["name"] for app in new] == [APP_NAME], new
    executors = [e for w in spark_cluster.worker_states() for e in w["executors"] + w["finishedexecutors"]
                 if e["appid"] == new[0]["id"]]  # fmt: skip
    assert len(executors) == 2, executors

    after = NightTables.read(deployed_platform.lake_root, deployed_platform.night)
    assert after.snapshot.num_rows == night_before.snapshot.num_rows > 0
    assert after.snapshot.equals(night_before.snapshot)  # the same rows, values and types
    assert after.scores.num_rows == night_before.scores.num_rows > 0
    assert after.scores.equals(night_before.scores)


def test_a_whole_night_with_the_lake_on_object_storage_writes_what_the_local_night_wrote(
    deployed_platform: DeployedPlatform,
    s3_server: S3Server,
    night_before: NightTables,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What an operator sets: the lake's root in the bucket, and how to reach the store, as AWS's clients read it.
    store = {"AWS_ENDPOINT_URL": s3_server.endpoint_url, "AWS_REGION": "us-east-1", **s3_server.aws_env()}
    root = s3_server.uri("night-lake")
    env = {**deployed_platform.env, "PLATFORM_LAKE_ROOT": root, **store}
    local_lake = deployed_platform.lake_root
    local_files = {p: p.stat().st_mtime_ns for p in local_lake.rglob("*") if p.is_file()}
    started = time.monotonic()
    execute_night(deployed_platform, deployed_platform.night, env, in_process=True).wait()
    local = deployed_platform.logs["night"].split("]")[0][1:]
    print(f"\nthe night with the lake on object storage: {time.monotonic() - started:.1f} s; on the local disk {local}")

    assert _latest_run(instance, deployed_platform.night).status == dg.DagsterRunStatus.SUCCESS
    from dagster_project.problem import load_problem
    from dagster_project.settings import Settings

    problem = load_problem(Settings())
    night = deployed_platform.night.isoformat()
    keys = s3_server.keys("night-lake")
    raw = [f"{layer}/{t['name']}" for t in problem.raw_tables for layer in (lake.RAW, lake.QUARANTINE)]
    features = f"{lake.FEATURES}/{problem.contract.features_model}"
    tables = [*raw, features, f"{lake.SCORING}/{lake.TOP_RISK_TABLE}", f"{lake.MONITORING}/{lake.DRIFT_REPORTS_TABLE}"]
    for table in tables:
        assert any(k.startswith(f"night-lake/{table}/date={night}/") for k in keys), (table, keys[:40])
    for delta in ("offline_store/feature_snapshots", "scoring/batch_scores"):
        assert f"night-lake/{delta}/_delta_log/00000000000000000000.json" in keys, (delta, keys[:40])
    # The drift report is still linked from the UI: its link opens the report over HTTP.
    drift = instance.get_latest_materialization_event(dg.AssetKey(["monitoring", "drift_report"]))
    link = drift.asset_materialization.metadata["report"].value
    with urllib.request.urlopen(link, timeout=30) as page:
        assert f"Data drift on {night}" in page.read().decode()
    # The local lake was neither read into nor written: the same files, untouched.
    assert {p: p.stat().st_mtime_ns for p in local_lake.rglob("*") if p.is_file()} == local_files

    for key, value in store.items():
        monkeypatch.setenv(key, value)
    on_s3 = NightTables.read(root, deployed_platform.night)
    assert on_s3.snapshot.num_rows == night_before.snapshot.num_rows > 0
    assert on_s3.snapshot.equals(night_before.snapshot)  # the same rows, values and types
    assert on_s3.scores.num_rows == night_before.scores.num_rows > 0
    assert on_s3.scores.equals(night_before.scores)


def test_two_nights_at_once_each_step_in_its_own_process_share_the_warehouse_one_step_at_a_time(
    deployed_platform: DeployedPlatform, night_before: NightTables, instance: dg.DagsterInstance
) -> None:
    # The deployed night again (a correction, say) and the next one, at once, by the default executor.
    first, second = deployed_platform.night, deployed_platform.night + dt.timedelta(days=1)
    started = time.monotonic()
    nights = [execute_night(deployed_platform, night, deployed_platform.env, in_process=False)
              for night in (first, second)]  # fmt: skip
    for night in nights:
        night.wait()
    print(f"\ntwo nights at once, a process per step: {time.monotonic() - started:.1f} s")

    runs = [_latest_run(instance, night) for night in (first, second)]
    assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS] * 2

    from dagster_project.definitions import defs as load_definitions

    job = load_definitions().resolve_job_def("nightly_pipeline")
    pools = {pool: {node.name for node in job.nodes if getattr(node.definition, "pool", None) == pool}
             for pool in (WAREHOUSE_POOL, OFFLINE_STORE_POOL)}  # fmt: skip
    assert all(pools.values()), f"a pool has no step of the nightly job: {pools}"
    spans: dict[str, list[tuple[float, float, str]]] = {pool: [] for pool in pools}
    for run in runs:
        steps: dict[str, dict[str, float | int]] = {}
        for record in instance.get_records_for_run(run.run_id).records:
            event = record.event_log_entry.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                steps.setdefault(event.step_key, {})["start"] = record.event_log_entry.timestamp
                steps[event.step_key]["pid"] = event.pid
            elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                steps.setdefault(event.step_key, {})["end"] = record.event_log_entry.timestamp
        # Each step in its own process: as many processes as steps, none of them the run's.
        pids = [step["pid"] for step in steps.values()]
        assert len(steps) == len(job.nodes) and len(set(pids)) == len(pids), steps
        for pool, pooled in pools.items():
            spans[pool] += [(steps[key]["start"], steps[key]["end"], f"{run.tags['dagster/partition']} {key}")
                            for key in pooled]  # fmt: skip
    for pool, pooled_spans in spans.items():
        pooled_spans.sort()
        overlapping = [(a[2], b[2]) for a, b in itertools.pairwise(pooled_spans) if b[0] < a[1]]
        assert not overlapping, f"steps of the {pool} pool ran at the same time: {overlapping}"
    # Steps of the two runs did run at the same time (else this would test nothing about concurrency).
    windows = {run.run_id: instance.get_run_stats(run.run_id) for run in runs}
    (a_start, a_end), (b_start, b_end) = ((s.start_time, s.end_time) for s in windows.values())
    assert max(a_start, b_start) < min(a_end, b_end)

    after = NightTables.read(deployed_platform.lake_root, first)
    assert after.snapshot.equals(night_before.snapshot)
    assert after.scores.equals(night_before.scores)
    following = NightTables.read(deployed_platform.lake_root, second)
    assert following.snapshot.num_rows == night_before.snapshot.num_rows
    assert following.scores.num_rows > 0
