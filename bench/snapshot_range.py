"""Benchmark: a backfill's days into ``feature_snapshots``, one Delta write per day against one write for the range.

    python bench/snapshot_range.py                      # 31 days x 3,000 customers x 10 features
    python bench/snapshot_range.py --days 120 --customers 10000

Both write the very same export files (one Parquet file per day, where the lake puts the dbt export) into their own
new table: ``snapshot_day`` once per day (one commit each), and ``snapshot_days`` once (one commit). The Spark
session is started and warmed up (one small write) before anything is timed; each way is timed ``--repeat`` times
(a rerun replaces the same days) and the best is printed, with the ratio. The tables are then compared day by day.
"""

import argparse
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from pit_join import bench_contract  # the same problem: customers, days and numeric features f0, f1, ...

from dagster_project.lake import FEATURES, offline_store, partition_path, write_partition_atomically
from dagster_project.settings import get_settings
from spark_jobs.contract import DBT_MODEL_CHECKSUM, Contract
from spark_jobs.feature_snapshots import snapshot_day, snapshot_days
from spark_jobs.session import get_spark
from spark_jobs.training_set import content_fingerprint

START = dt.date(2025, 1, 1)


def export_days(lake: Path, contract: Contract, days: list[dt.date], customers: int) -> list[tuple[dt.date, Path]]:
    """One Parquet file per day, as the dbt export writes it (with its provenance)."""
    rng = np.random.default_rng(7)
    ids = pa.array([f"c-{i}" for i in range(customers)])
    written = []
    for day in days:
        columns = {"customer_id": ids, "snapshot_date": pa.array([day] * customers, pa.date32())}
        columns |= {f.name: pa.array(rng.normal(size=customers)) for f in contract.features}
        table = pa.table(columns).replace_schema_metadata({DBT_MODEL_CHECKSUM: "bench", "dbt_model": "bench"})
        path = partition_path(lake, FEATURES, contract.features_model, day)
        write_partition_atomically(table, path)
        written.append((day, path))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--customers", type=int, default=3_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    settings = get_settings()
    contract = bench_contract(args.features)
    root = Path(tempfile.mkdtemp(prefix="snapshot_range_"))
    try:
        started = time.monotonic()
        spark = get_spark(master="local[2]", driver_memory=settings.spark_driver_memory,
                          jars_cache=settings.jars_cache, extra_conf={"spark.ui.enabled": "false"})  # fmt: skip
        warm = offline_store(root / "warm")
        snapshot_days(spark, export_days(root / "warm", contract, [START], 100), warm, contract)
        print(f"spark start-up and warm-up: {time.monotonic() - started:.1f}s")

        days = [START + dt.timedelta(days=i) for i in range(args.days)]
        sources = export_days(root / "lake", contract, days, args.customers)
        per_day_store, range_store = offline_store(root / "per_day"), offline_store(root / "range")
        timings: dict[str, list[float]] = {"one write per day": [], "one write for the range": []}
        for _ in range(args.repeat):
            t = time.monotonic()
            for day, source in sources:
                snapshot_day(spark, day, source, per_day_store, contract)
            timings["one write per day"].append(time.monotonic() - t)
            t = time.monotonic()
            snapshot_days(spark, sources, range_store, contract)
            timings["one write for the range"].append(time.monotonic() - t)

        print(f"{args.days} days x {args.customers:,} customers x {args.features} features (best of {args.repeat})")
        best = {name: min(times) for name, times in timings.items()}
        for name, seconds in best.items():
            print(f"  {name:<24} {seconds:7.2f}s  ({seconds / args.days:.3f}s a day; all: {timings[name]})")
        print(f"  ratio                    {best['one write per day'] / best['one write for the range']:7.1f}x")

        def table(store):
            return spark.read.format("delta").load(str(store.feature_snapshots))

        same = content_fingerprint(table(per_day_store)) == content_fingerprint(table(range_store))
        print(f"  same rows in both tables: {same}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
