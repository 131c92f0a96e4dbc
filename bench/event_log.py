"""Benchmark: the story's event log (``dagster_project.event_log``) against Dagster's own SQLite event log.

    .venv/bin/python bench/event_log.py [--days 60] [--repeats 3]

Runs one ranged run of a small daily asset graph (three assets, one with a check) over ``--days`` partitions, as
the story's history run is (a planned event and a materialization per asset and day, the steps' own events), into
a fresh instance of each kind, alternating, ``--repeats`` times; prints the median seconds of each and their ratio.
Target: the story's event log writes the same run in at most half the time (ratio <= 0.5).
"""

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time

import dagster as dg

from dagster_project.instance import local_instance
from dagster_project.partitions import RANGE_END, RANGE_START
from dagster_project.settings import get_settings

TARGET_RATIO = 0.5
FIRST = dt.date(2025, 1, 1)


def _job() -> dg.JobDefinition:
    partitions = dg.DailyPartitionsDefinition(start_date=FIRST.isoformat())
    policy = dg.BackfillPolicy.single_run()

    @dg.asset(partitions_def=partitions, backfill_policy=policy)
    def raw(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"days": len(context.partition_keys)})

    @dg.asset(partitions_def=partitions, backfill_policy=policy, deps=[raw])
    def features(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"days": len(context.partition_keys)})

    @dg.asset(
        partitions_def=partitions,
        backfill_policy=policy,
        deps=[features],
        check_specs=[dg.AssetCheckSpec("rows", asset="snapshots")],
    )
    def snapshots(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=True)])

    return dg.Definitions(assets=[raw, features, snapshots]).resolve_implicit_global_asset_job_def()


def _one_run(fast: bool, days: int) -> float:
    with tempfile.TemporaryDirectory() as root:
        os.environ["PLATFORM_DATA_ROOT"] = root
        get_settings.cache_clear()
        instance = local_instance(get_settings(), fast_event_log=fast)
        job = _job()
        last = FIRST + dt.timedelta(days=days - 1)
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            tags={RANGE_START: FIRST.isoformat(), RANGE_END: last.isoformat()},
            raise_on_error=True,
        )
        seconds = time.perf_counter() - started
        assert result.success
        instance.dispose()
        return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60, help="partitions of the ranged run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    _one_run(True, 3)  # imports and first-use costs out of the timed runs
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for fast in (False, True):
            seconds[fast].append(_one_run(fast, args.days))
    stock, fast = statistics.median(seconds[False]), statistics.median(seconds[True])
    ratio = fast / stock
    print(f"a ranged run of 3 assets over {args.days} days, median of {args.repeats}:")
    print(f"  Dagster's SQLite event log   {stock:7.2f} s  {[round(s, 2) for s in seconds[False]]}")
    print(f"  the story's event log        {fast:7.2f} s  {[round(s, 2) for s in seconds[True]]}")
    print(f"  ratio {ratio:.2f} (target <= {TARGET_RATIO}): {'met' if ratio <= TARGET_RATIO else 'missed'}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
