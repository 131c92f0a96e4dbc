"""Benchmark: one nightly partition at 100,000 customers, asset by asset, with start-up costs and peak memory.

    .venv/bin/python bench/nightly.py [--customers 100000] [--day 91] [--data-root /tmp/bench_nightly] [--reuse]
                                      [--spark-cluster | --spark-connect]

Setup (not timed): the simulator's history up to the day before the measured night, built the way a backfill
would (the raw tables, the dbt features and the offline store in ranged runs of up to a month), then
the first champion: the real ``retrain`` job builds the training set with Spark, which is then thinned to one
customer in ``--train-every`` (at 100,000 customers the full set is 6 million rows, more than the pandas training
step holds in memory on this machine), and the job's model and promotion steps train and promote the champion.
Steps already done under ``--data-root`` are kept; ``--reuse`` skips the setup altogether.

Timed: the measured night runs in a fresh process, as a scheduled run would: Python start and imports, the
definitions, then the run the nightly schedule requests for that day, through the whole graph (raw, features,
snapshot, scores, drift report, performance). The run starts the Spark session as it begins, on a thread, while
the raw tables and dbt run (``--spark-before-run``: first, apart, as the project did before). The parent samples
the memory of the whole process tree (Python and the Spark JVM) every 100 ms. Targets: the night under 3 minutes
and 4 GB on 2 cores, Dagster and Spark start-up under 20% of it, the drift report for 100,000 rows under 15 s.

``--spark-connect``: the night twice, with ``PLATFORM_SPARK_MASTER`` pointing at a Spark Connect server started
here (local[2], 2 GB): the first night finds the server's JVM cold, the second warm, as a long-lived server of a
deployment serves every night but its first. The server's JVM counts in the peak memory.

``--lake-on-s3``: the night on the local disk, then the same night with ``PLATFORM_LAKE_ROOT`` in the bucket of an
S3 API server started here (moto's, on 127.0.0.1, as ``tests/s3_server.py`` starts it), reached through AWS's
variables. Before it, untimed, the lake's history that the night reads is uploaded there (the raw and quarantine
layers, the label exports, the Delta tables of snapshots and scores; not the feature exports of other days nor the
training sets, which the night does not read). moto keeps the objects in memory, in Python: the figure shows the
cost of the platform's S3 code paths against a server on loopback, not the speed of a production store. Its
process does not count in the peak memory.

``--spark-cluster``: the same night with ``PLATFORM_SPARK_MASTER`` pointing at a standalone cluster started here
on 127.0.0.1 (a master and two workers of one core each, as ``tests/spark_cluster.py`` starts them): the same two
cores, so the figure shows what the cluster's driver, executors and the network between them cost. Its daemons and
executors count in the peak memory.
"""

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = dt.date(2025, 1, 1)
NIGHT_MARKER = "NIGHT_RESULT "


def _env(root: Path, customers: int) -> dict[str, str]:
    return {
        **os.environ,
        "PLATFORM_DATA_ROOT": str(root),
        "PLATFORM_SIMULATOR__CUSTOMERS": str(customers),
        "DAGSTER_HOME": str(root / "dagster"),
    }


def sample_training_set(lake_root: Path, every: int, entity: str) -> int:
    """Keep one ``entity`` value (a customer) in ``every`` in the latest training set, written as its next Delta
    version with the same lineage (the bench's champion only needs the production model's shape, not all of its
    rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    path = lake_root / "offline_store" / "training_set"
    table = DeltaTable(str(path))
    commit = next(c for c in table.history() if c.get("version") == table.version())
    dataset = table.to_pyarrow_dataset()
    customers = pc.unique(dataset.to_table(columns=[entity])[entity])
    customers = customers.take(pc.array_sort_indices(customers))
    kept = customers.take(pa.array(range(0, len(customers), every)))
    sample = dataset.to_table(filter=ds.field(entity).isin(kept))
    metadata = {"userMetadata": commit["userMetadata"]} if commit.get("userMetadata") else {}
    write_deltalake(str(path), sample, mode="overwrite", commit_properties=CommitProperties(custom_metadata=metadata))
    return sample.num_rows


def setup(root: Path, customers: int, night: dt.date, chunk: int, train_every: int) -> dict[str, float]:
    """Build the history before ``night`` and the first champion (in this process); steps already done are kept."""
    os.environ.update(_env(root, customers))
    import dagster as dg

    from dagster_project import asset_keys, replay
    from dagster_project.definitions import defs as load_definitions
    from dagster_project.defs.automation.abandoned_runs import fail_abandoned_runs
    from dagster_project.defs.automation.jobs import RETRAIN_JOB
    from dagster_project.defs.automation.sensors import TAG_REASON
    from dagster_project.defs.ml import registry
    from dagster_project.instance import local_instance
    from dagster_project.partitions import day_chunks
    from dagster_project.problem import load_problem
    from dagster_project.resources import MlflowResource
    from dagster_project.settings import get_settings

    defs = load_definitions()

    settings = get_settings()
    lake = Path(settings.lake_root)
    instance = local_instance(settings)
    fail_abandoned_runs(instance)  # an interrupted earlier setup must not hold a pool slot
    job = defs.resolve_job_def("nightly_pipeline")
    keys = job.asset_layer.executable_asset_keys
    data_keys = [k for k in keys if k.path[0] not in ("scoring", "monitoring")]
    history = [START + dt.timedelta(days=i) for i in range((night - START).days)]
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    figures: dict[str, float] = {}

    started = time.perf_counter()
    snapshots = lake / "offline_store" / "feature_snapshots"
    for first, last in day_chunks(history[0], history[-1], chunk):
        if (snapshots / f"snapshot_date={last}").exists():
            continue
        result = replay.run_range(defs, instance, first, last, data_keys, "bench history", run_config=quiet)
        if not result.success:
            raise RuntimeError(f"raw data, features and snapshots of {first}..{last} failed")
        print(f"  history {first}..{last} built", flush=True)
    figures["history_seconds"] = time.perf_counter() - started

    if registry.version_by_alias(MlflowResource.from_settings(settings), "champion") is None:
        request = dg.RunRequest(tags={TAG_REASON: "bootstrap"})
        started = time.perf_counter()
        result = replay.execute_request(defs, instance, RETRAIN_JOB, request, {}, [asset_keys.TRAINING_SET], quiet)
        if not result.success:
            raise RuntimeError("the training set could not be built")
        figures["training_set_seconds"] = time.perf_counter() - started
        rows = sample_training_set(lake, train_every, load_problem(settings).contract.entity[0])
        print(f"  training set built; the champion trains on 1 customer in {train_every} ({rows:,} rows)", flush=True)
        started = time.perf_counter()
        result = replay.execute_request(
            defs, instance, RETRAIN_JOB, request, {}, [asset_keys.CHURN_MODEL, asset_keys.CHAMPION_MODEL], quiet
        )
        if not result.success:
            raise RuntimeError("the first champion could not be trained")
        figures["champion_seconds"] = time.perf_counter() - started
    return figures


def night(root: Path, customers: int, day: dt.date, process_start: float, spark_before_run: bool) -> None:
    """The measured night, in this (fresh) process; prints one JSON line. The run starts the Spark session itself
    as it begins, on a thread, while the raw tables and dbt run; ``spark_before_run`` starts it first instead, as
    the project did before (and so shows what the overlap saves)."""
    os.environ.update(_env(root, customers))
    imported = time.time()
    from dagster_project import replay
    from dagster_project.definitions import defs as load_definitions
    from dagster_project.instance import local_instance
    from dagster_project.resources import SparkResource, build_resources
    from dagster_project.settings import get_settings

    defs = load_definitions()

    settings = get_settings()
    instance = local_instance(settings)
    defs.resolve_job_def("nightly_pipeline")
    definitions_loaded = time.time()
    if spark_before_run:
        SparkResource.from_settings(settings).get_session(build_resources(settings)["lake"].object_store)
    spark_started = time.time()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    request, result = replay.run_nightly(defs, instance, day, run_config=quiet)
    finished = time.time()
    steps = {s.step_key: (s.end_time or 0) - (s.start_time or 0) for s in instance.get_run_step_stats(result.run_id)}
    drift = next(
        (
            e.materialization.metadata
            for e in result.get_asset_materialization_events()
            if e.asset_key.to_user_string() == "monitoring/drift_report"
        ),
        {},
    )
    payload = {
        "success": result.success,
        "partition": request.partition_key,
        "python_start_and_imports": imported - process_start,
        "definitions": definitions_loaded - imported,
        "spark_start": spark_started - definitions_loaded,
        "run": finished - spark_started,
        "steps": steps,
        "drift_compute_seconds": drift["compute_seconds"].value if "compute_seconds" in drift else None,
        "drift_rows": drift["current_rows"].value if "current_rows" in drift else None,
        "drift_rows_compared": drift["current_rows_compared"].value if "current_rows_compared" in drift else None,
    }
    print(NIGHT_MARKER + json.dumps(payload), flush=True)


def _tree_rss(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, in bytes (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    total, stack, page = 0, [pid], os.sysconf("SC_PAGE_SIZE")
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            total += int((Path("/proc") / str(current) / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--day", type=int, default=91, help="the measured night's day (1 = the first day)")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="the data root already holds the history")
    parser.add_argument("--chunk", type=int, default=31, help="days per ranged history run")
    parser.add_argument("--train-every", type=int, default=10, help="the champion trains on 1 customer in N")
    parser.add_argument(
        "--spark-cluster",
        action="store_true",
        help="run the measured night's Spark on a standalone cluster started here (a master, two one-core workers)",
    )
    parser.add_argument(
        "--spark-connect",
        action="store_true",
        help="run the night twice against a Spark Connect server started here (local[2]): cold, then warm",
    )
    parser.add_argument(
        "--lake-on-s3",
        action="store_true",
        help="the night on the local disk, then with the lake on an S3 API server started here (moto's)",
    )
    parser.add_argument(
        "--spark-before-run",
        action="store_true",
        help="start the night's Spark session before its run, not during it (the project's former way)",
    )
    parser.add_argument("--night", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    root = args.data_root or Path(tempfile.mkdtemp(prefix="bench_nightly_"))
    day = START + dt.timedelta(days=args.day - 1)
    if args.night:
        night(root, args.customers, day, float(os.environ["BENCH_PROCESS_START"]), args.spark_before_run)
        return 0

    setup_figures: dict[str, float] = {}
    if not args.reuse:
        print(f"setup: {args.day - 1} days of history at {args.customers:,} customers in {root} (untimed)")
        started = time.perf_counter()
        setup_figures = setup(root, args.customers, day, args.chunk, args.train_every)
        print(f"setup done in {time.perf_counter() - started:.0f} s")

    with contextlib.ExitStack() as stack:
        extra_env, extra_pids = {}, []
        if args.spark_cluster or args.spark_connect or args.lake_on_s3:  # started as the tests start them
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        if args.spark_cluster:
            from spark_cluster import standalone_cluster

            cluster = stack.enter_context(standalone_cluster(worker_memory="3g", executor_memory="2560m"))
            extra_env = {"PLATFORM_SPARK_MASTER": cluster.master_url, **cluster.driver_env}
            extra_pids = cluster.pids
            print(f"the night's Spark: the standalone cluster {cluster.master_url} (2 workers of 1 core)")
        if args.spark_connect:
            from spark_cluster import connect_server

            server = stack.enter_context(connect_server(master="local[2]", driver_memory="2g"))
            extra_env, extra_pids = {"PLATFORM_SPARK_MASTER": f"sc://127.0.0.1:{server.port}"}, server.pids
            print(f"the night's Spark: a Spark Connect server on 127.0.0.1:{server.port}; first night (cold server):")
            measure_night(root, args, day, setup_figures, extra_env, extra_pids)
            print("\nthe same night again, the server warm:")
        if args.lake_on_s3:
            print("the night with the lake on the local disk:")
            measure_night(root, args, day, setup_figures, extra_env, extra_pids)
            extra_env = {**extra_env, **lake_on_s3(stack, root)}
            print("\nthe same night with the lake on the S3 API server:")
        return measure_night(root, args, day, setup_figures, extra_env, extra_pids)


def night_reads() -> list[str]:
    """What the night reads of the lake's history (see the module's doc): the rest is left on the local disk."""
    from dagster_project import lake
    from dagster_project.problem import load_problem
    from dagster_project.settings import Settings
    from spark_jobs.paths import FEATURE_SNAPSHOTS, PROTECTED_VERSIONS_FILE

    labels = load_problem(Settings()).contract.labels_model
    return [lake.RAW, lake.QUARANTINE, f"{lake.FEATURES}/{labels}", f"{lake.OFFLINE_STORE}/{FEATURE_SNAPSHOTS}",
            f"{lake.OFFLINE_STORE}/{PROTECTED_VERSIONS_FILE}", f"{lake.SCORING}/{lake.BATCH_SCORES_TABLE}"]  # fmt: skip


def lake_on_s3(stack: contextlib.ExitStack, root: Path) -> dict[str, str]:
    """Start moto's S3 server, upload what the night reads of the lake under ``root``; the night's environment."""
    import pyarrow.fs as pafs
    from s3_server import running_s3_server

    server = stack.enter_context(running_s3_server())
    started = time.perf_counter()
    filesystem, local = server.object_store().filesystem(), pafs.LocalFileSystem()
    for part in night_reads():
        source = root / "lake" / part
        if source.exists():
            pafs.copy_files(str(source), f"{server.bucket}/lake/{part}", source_filesystem=local,
                            destination_filesystem=filesystem, use_threads=True)  # fmt: skip
    print(f"  {len(server.keys('lake'))} objects uploaded in {time.perf_counter() - started:.0f} s (untimed)")
    return {"PLATFORM_LAKE_ROOT": server.uri("lake"), "AWS_ENDPOINT_URL": server.endpoint_url,
            "AWS_REGION": "us-east-1", **server.aws_env()}  # fmt: skip


def measure_night(
    root: Path,
    args: argparse.Namespace,
    day: dt.date,
    setup_figures: dict[str, float],
    extra_env: dict[str, str],
    extra_pids: list[int],
) -> int:
    """Run the night in a child process, sampling the memory of its tree (and of ``extra_pids``' trees: a Spark
    cluster's daemons and executors); print the figures and the targets."""
    env = {**_env(root, args.customers), **extra_env, "BENCH_PROCESS_START": repr(time.time())}
    started = time.time()
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--night",
            "--customers",
            str(args.customers),
            "--day",
            str(args.day),
            "--data-root",
            str(root),
            *(["--spark-before-run"] if args.spark_before_run else []),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    peak = 0
    while child.poll() is None:
        peak = max(peak, sum(_tree_rss(pid) for pid in [child.pid, *extra_pids]))
        time.sleep(0.1)
    wall = time.time() - started
    output = child.stdout.read() if child.stdout else ""
    lines = [line for line in output.splitlines() if line.startswith(NIGHT_MARKER)]
    if child.returncode != 0 or not lines:
        print(output[-3000:])
        print(f"the measured night failed (exit {child.returncode})")
        return 1
    figures = json.loads(lines[-1].removeprefix(NIGHT_MARKER))
    steps: dict[str, float] = figures["steps"]
    startup = figures["python_start_and_imports"] + figures["definitions"] + figures["spark_start"]
    run_overhead = figures["run"] - sum(steps.values())

    print(
        f"\none night ({figures['partition']}, {args.customers:,} customers, day {args.day}), fresh process, "
        f"2 cores: {'success' if figures['success'] else 'FAILED'}"
    )
    print(f"  {'phase':<44}{'seconds':>9}{'share':>8}")
    rows = [
        ("python start, imports", figures["python_start_and_imports"]),
        ("definitions (Dagster, dbt manifest)", figures["definitions"]),
        ("Spark session start (before the run)", figures["spark_start"]),
        *((f"  step {k}", v) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])),
        ("Dagster run overhead (run minus steps)", run_overhead),
    ]
    for name, seconds in rows:
        print(f"  {name:<44}{seconds:>9.1f}{seconds / wall:>8.0%}")
    print(f"  {'whole night (wall, process start to exit)':<44}{wall:>9.1f}")
    print(f"  peak memory (RSS of Python + JVM): {peak / 1024**3:.2f} GB")
    drift = figures["drift_compute_seconds"]
    print(
        f"  drift report: {drift:.1f} s of Evidently for {figures['drift_rows']:,} rows "
        f"({figures['drift_rows_compared']:,} compared)"
        if drift is not None
        else "  drift report: none"
    )
    for name, seconds in setup_figures.items():
        print(f"  setup {name.removesuffix('_seconds').replace('_', ' ')}: {seconds:.0f} s")
    share = (startup + max(run_overhead, 0)) / wall
    targets = {
        "night < 180 s": wall < 180,
        "peak < 4 GB": peak < 4 * 1024**3,
        f"start-up {share:.0%} < 20%": share < 0.2,
        "drift report < 15 s": drift is not None and drift < 15,
    }
    print("targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
