"""The daily partitions and the label-horizon mapping: the definitions that depend on settings, declared once.

They are built when the definitions load (``definitions.py``), never at import: Dagster needs them to draw the
graph (the partitions the UI shows, which day of scores a day of matured labels judges). Assets read the values
back from these definitions at run time, never from the settings again, so a run cannot disagree with the graph.
"""

import dagster as dg

from dagster_project.settings import Settings
from spark_jobs.contract import Contract


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
