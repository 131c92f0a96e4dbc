"""Benchmark: the project's point-in-time training-set job against DuckDB's ASOF JOIN on identical data.

    python bench/pit_join.py                 # 100,000 labels vs 100,000 customers x 60 days x 10 features
    python bench/pit_join.py --scale 10      # ten times the customers and the labels
    python bench/pit_join.py --naive         # also time a plain Spark window join, for reference

The snapshots are written once as hive-partitioned Parquet (``snapshot_date=D/part-0.parquet``) and turned into a
Delta table in place with ``CONVERT TO DELTA``, so Spark (through Delta) and DuckDB (through ``read_parquet``)
read the very same files. Some (customer, day) snapshots are missing (late or skipped days) and some customers
sign up late, so the job's as-of fallback and its "no snapshot" accounting both do real work
(``--missing-share 0 --signup-share 0`` gives the common case of dbt's own labels, which all find their day).
Prediction times are arbitrary timestamps, a fifth of them exactly midnight.

Timed, warm (best of ``--repeat`` after one untimed warm-up run of each engine, unless ``--no-warmup``):
* Spark session start-up, apart;
* the project's job, ``spark_jobs.training_set.run``: read labels and the Delta snapshots at a pinned version,
  join, write a new Delta version with its commit metadata, and verify what was written;
* the project's join alone (``point_in_time_join`` into Spark's ``noop`` sink);
* DuckDB: the same ASOF JOIN, written to a Parquet file, and materialized in memory alone.
Then both results are compared row by row (same rows, same snapshot chosen for each label).
"""

import argparse
import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dagster_project.lake import offline_store, partition_path, table_dir
from dagster_project.settings import get_settings
from spark_jobs import point_in_time, training_set
from spark_jobs.contract import NUMERIC, Contract, Feature

START = dt.date(2025, 1, 1)
LABELS = ("features", "churn_labels")  # the lake's label export: (layer, table)


def bench_contract(features: int) -> Contract:
    """The benchmark's problem, as a team would declare it: its customers, snapshot days and labels (the columns
    ``generate`` writes), and ``features`` numeric features f0, f1, ..."""
    return Contract(
        entity=("customer_id",),
        features_model="bench_features",
        as_of="snapshot_date",
        features=tuple(Feature(f"f{f}", NUMERIC) for f in range(features)),
        feature_set_version="1",
        labels_model=LABELS[1],
        label_as_of="snapshot_date",
        prediction_time="prediction_time",
        label="churned",
        horizon_days=30,
        source="bench/pit_join.py",
    )


def generate(
    root: Path,
    customers: int,
    days: int,
    labels: int,
    features: int,
    seed: int,
    signup_share: float = 0.1,
    missing_share: float = 0.02,
) -> dict[str, int]:
    """Snapshots (hive-partitioned, ready for CONVERT TO DELTA) and labels (the lake's label layout)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"c{i:08d}" for i in range(customers)], dtype=object)
    # Some customers sign up during the window: before that day they have no snapshot.
    signup = np.where(rng.random(customers) < signup_share, rng.integers(0, days, customers), 0)
    lake_root = root / "lake"
    paths = offline_store(lake_root)
    snapshot_rows = 0
    for d in range(days):
        present = (signup <= d) & (rng.random(customers) >= missing_share)  # late or skipped days
        n = int(present.sum())
        columns = {"customer_id": pa.array(ids[present], pa.string())}
        for f in range(features):
            columns[f"f{f}"] = pa.array(rng.normal(size=n))
        folder = paths.feature_snapshots / f"snapshot_date={START + dt.timedelta(days=d)}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), folder / "part-0.parquet")
        snapshot_rows += n
    # Labels: a customer, a prediction time anywhere in the window (a fifth of them on a midnight), a label.
    who = rng.integers(0, customers, labels)
    micros = rng.integers(86_400_000_000, days * 86_400_000_000, labels)
    micros = np.where(rng.random(labels) < 0.2, micros - micros % 86_400_000_000, micros)
    times = np.datetime64(START.isoformat(), "us") + micros.astype("timedelta64[us]")
    table = pa.table(
        {
            "customer_id": pa.array(ids[who], pa.string()),
            "snapshot_date": pa.array((times - np.timedelta64(1, "D")).astype("datetime64[D]"), pa.date32()),
            "prediction_time": pa.array(times, pa.timestamp("us")),
            "churned": pa.array(rng.integers(0, 2, labels), pa.int64()),
        }
    )
    label_day = pc.cast(table["prediction_time"], pa.date32()).to_numpy(zero_copy_only=False)
    for day in np.unique(label_day):
        part = table.filter(pa.array(label_day == day))
        path = partition_path(lake_root, *LABELS, dt.date.fromisoformat(str(day)))
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, path)
    return {"snapshot_rows": snapshot_rows, "label_rows": labels}


WARMUP = True


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    if WARMUP:
        fn()  # warm-up: JIT, file cache, and Spark's and DuckDB's own caches of metadata
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


ASOF = """
    with labels as (
        select customer_id, prediction_time, snapshot_date as label_snapshot_date, churned,
               cast(prediction_time as date) - 1 as cutoff
        from read_parquet($labels)
    ),
    snapshots as (
        select * from read_parquet($snapshots, hive_partitioning = true)
    )
    select l.customer_id, l.prediction_time, l.label_snapshot_date, l.churned,
           s.snapshot_date as feature_snapshot_date, s.* exclude (customer_id, snapshot_date)
    from labels l asof join snapshots s on l.customer_id = s.customer_id and l.cutoff >= s.snapshot_date
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--labels", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies customers and labels")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs after the warm-up (best is reported)")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True, help="one untimed run first")
    parser.add_argument("--naive", action="store_true", help="also time a naive Spark window join")
    parser.add_argument("--driver-memory", default=None, help="default: settings.spark_driver_memory")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--signup-share", type=float, default=0.1, help="customers who sign up during the window")
    parser.add_argument("--missing-share", type=float, default=0.02, help="(customer, day) snapshots missing")
    args = parser.parse_args()
    global WARMUP
    WARMUP = args.warmup
    customers, labels = int(args.customers * args.scale), int(args.labels * args.scale)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pit_bench_"))
    paths = offline_store(workdir / "lake")
    labels_dir = table_dir(workdir / "lake", *LABELS)
    contract = bench_contract(args.features)
    try:
        started = time.perf_counter()
        sizes = generate(
            workdir, customers, args.days, labels, args.features, args.seed, args.signup_share, args.missing_share
        )
        took = time.perf_counter() - started
        print(f"data: {labels:,} labels vs {customers:,} customers x {args.days} days x {args.features} features "
              f"= {sizes['snapshot_rows']:,} snapshot rows (generated in {took:.1f}s)")  # fmt: skip

        from spark_jobs.session import build_session

        settings = get_settings()
        started = time.perf_counter()
        spark = build_session(settings.spark_master, args.driver_memory or settings.spark_driver_memory,
                              settings.jars_cache, extra_conf={"spark.ui.enabled": "false"})  # fmt: skip
        startup = time.perf_counter() - started
        started = time.perf_counter()
        spark.sql(f"CONVERT TO DELTA parquet.`{paths.feature_snapshots}` PARTITIONED BY (snapshot_date DATE)")
        print(f"spark start-up: {startup:.1f}s; CONVERT TO DELTA in place: {time.perf_counter() - started:.1f}s")

        job_time, written = best_of(args.repeat, lambda: training_set.run(spark, paths, labels_dir, contract))

        def join_only() -> None:
            join, _, _ = training_set.build_training_set(spark, paths, labels_dir, contract)
            join.frame.write.format("noop").mode("overwrite").save()
            join.release()

        join_time, _ = best_of(args.repeat, join_only)

        con = duckdb.connect()
        files = {
            "labels": str(labels_dir / "*" / "*.parquet"),
            "snapshots": str(paths.feature_snapshots / "snapshot_date=*" / "*.parquet"),
        }
        out = workdir / "duckdb_training_set.parquet"
        duck_time, _ = best_of(
            args.repeat, lambda: con.execute(f"copy ({ASOF}) to '{out}' (format parquet)", files).fetchall()
        )
        duck_join_time, _ = best_of(
            args.repeat, lambda: con.execute(f"create or replace temp table asof_result as {ASOF}", files).fetchall()
        )

        # Same rows, and the same snapshot for every label.
        from deltalake import DeltaTable

        con.register("project", DeltaTable(str(paths.training_set)).to_pyarrow_dataset())
        (ours, theirs, disagree) = con.execute(
            "select (select count(*) from project), (select count(*) from asof_result), "
            "(select count(*) from project p full join asof_result d using (customer_id, prediction_time) "
            " where p.feature_snapshot_date is distinct from d.feature_snapshot_date or p.f0 is distinct from d.f0)"
        ).fetchone()
        stats = written.stats  # type: ignore[attr-defined]
        print(f"labels: {stats.exact:,} on their cutoff day, {stats.earlier:,} on an earlier day, "
              f"{stats.without_snapshot:,} without a snapshot; rows: project {ours:,}, duckdb {theirs:,}, "
              f"disagreeing {disagree}")  # fmt: skip
        print(f"project job (read, join, write Delta, verify): {job_time:6.2f}s  "
              f"= {job_time / duck_time:4.2f}x DuckDB ASOF JOIN + write Parquet ({duck_time:.2f}s)")  # fmt: skip
        print(f"project join alone (noop sink):                {join_time:6.2f}s  "
              f"= {join_time / duck_join_time:4.2f}x DuckDB ASOF JOIN in memory ({duck_join_time:.2f}s)")  # fmt: skip
        if args.naive:
            from pyspark.sql import Window
            from pyspark.sql import functions as F

            def naive() -> None:
                lab = point_in_time.prepare_labels(training_set.read_labels(spark, labels_dir), contract)
                lab = lab.withColumn("_id", F.monotonically_increasing_id()).withColumn(
                    "_cutoff", point_in_time.snapshot_cutoff(F.col("prediction_time"))
                )
                snaps = (
                    spark.read.format("delta").load(str(paths.feature_snapshots)).withColumnRenamed("customer_id", "_c")
                )
                pairs = lab.join(
                    snaps, (F.col("customer_id") == F.col("_c")) & (F.col("snapshot_date") <= F.col("_cutoff"))
                )
                latest = Window.partitionBy("_id").orderBy(F.col("snapshot_date").desc())
                pairs.withColumn("_rank", F.row_number().over(latest)).where("_rank = 1").write.format("noop").mode(
                    "overwrite"
                ).save()

            started = time.perf_counter()
            naive()
            naive_time = time.perf_counter() - started
            print(f"naive Spark window join (cold, once):          {naive_time:6.2f}s  "
                  f"= {naive_time / duck_join_time:4.2f}x DuckDB")  # fmt: skip
        spark.stop()
        return 0 if disagree == 0 and ours == theirs else 1
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
