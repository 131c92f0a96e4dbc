"""The daily partitions and the label-horizon mapping: the definitions that depend on settings, declared once.

They are built when the definitions load (``definitions.py``), never at import: Dagster needs them to draw the
graph (the partitions the UI shows, which day of scores a day of matured labels judges). Assets read the values
back from these definitions at run time, never from the settings again, so a run cannot disagree with the graph.
"""

import datetime as dt
import warnings
from collections.abc import Callable
from typing import Any

import dagster as dg

from dagster_project.settings import Settings
from spark_jobs.contract import Contract

# A backfill (or the main command's story) builds up to a month of days per run, in every daily layer from the raw
# tables to the offline store's snapshots: one dbt build, one Delta commit and one run's overhead per month instead
# of per day. The layers share the policy, so a backfill of the whole graph moves in the same chunks.
MAX_DAYS_PER_RUN = 31
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_DAYS_PER_RUN)

# The tags of a run over a range of partitions (what a backfill's ranged runs carry).
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def day_chunks(first: dt.date, last: dt.date, max_days: int = MAX_DAYS_PER_RUN) -> list[tuple[dt.date, dt.date]]:
    """``first``..``last`` cut into the ranges one run builds: up to ``max_days`` consecutive days each."""
    chunks, start = [], first
    while start <= last:
        end = min(start + dt.timedelta(days=max_days - 1), last)
        chunks.append((start, end))
        start = end + dt.timedelta(days=1)
    return chunks


def ranged_asset(**asset_args: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """``@dg.asset`` with the shared ``BACKFILL_POLICY``: the asset builds every day of ``context.partition_keys``.

    ``backfill_policy`` is a beta parameter of ``@asset`` (not of ``@dbt_assets``): its notice is silenced so that
    loading the definitions prints no warning."""

    def decorate(function: Callable[..., Any]) -> dg.AssetsDefinition:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)
            return dg.asset(backfill_policy=BACKFILL_POLICY, **asset_args)(function)

    return decorate


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """One partition per day of data, from the first day of history (UTC)."""
    return dg.DailyPartitionsDefinition(start_date=settings.history_start.isoformat())


def label_horizon_mapping(contract: Contract) -> dg.TimeWindowPartitionMapping:
    """Partition P of a label-driven asset reads partition P - N of the scores: labels of day D mature on D + N (N,
    the contract's label horizon)."""
    horizon = contract.horizon_days
    return dg.TimeWindowPartitionMapping(start_offset=-horizon, end_offset=-horizon)


def horizon_days(mapping: dg.TimeWindowPartitionMapping) -> int:
    """The label horizon a ``label_horizon_mapping`` was built with."""
    return -mapping.start_offset
