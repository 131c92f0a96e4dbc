"""The volume check: a day's row count against the trailing days', so that an empty or cut-off file does not
pass for a quiet day.

A header-only activity file is a valid file; without this check the day would count as complete, with no
activity at all, and every feature and score downstream would say every customer went quiet. The check
compares the rows the day keeps with the median of the trailing days already in the lake and fails, as a
blocking check, below the table's ``min_volume_share`` of it: dbt does not run on such a day. A day that really
is empty (an outage of the product itself) is let through by running it with the tag
``ACCEPT_LOW_VOLUME_TAG`` naming the table; the check then passes and says it was overridden.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from dagster_project import lake
from spark_jobs.object_store import Location

TRAILING_DAYS = 7  # a week: every weekday once, so a weekend dip is inside the median
MIN_HISTORY_DAYS = 3  # fewer trailing days in the lake than this and there is nothing to compare with
ACCEPT_LOW_VOLUME_TAG = "platform/accept_low_volume"  # its value: the tables to let through, comma separated


@dataclass(frozen=True)
class VolumeVerdict:
    rows: int
    trailing_rows: tuple[int, ...]  # row counts of the trailing days found in the lake, oldest first
    min_share: float
    overridden: bool

    @property
    def trailing_median(self) -> float | None:
        return statistics.median(self.trailing_rows) if len(self.trailing_rows) >= MIN_HISTORY_DAYS else None

    @property
    def floor(self) -> float | None:
        median = self.trailing_median
        return None if median is None else self.min_share * median

    @property
    def passed(self) -> bool:
        return self.overridden or self.floor is None or self.rows >= self.floor

    @property
    def explanation(self) -> str:
        if self.floor is None:
            return f"{len(self.trailing_rows)} trailing days in the lake, fewer than {MIN_HISTORY_DAYS}: not judged"
        verdict = f"{self.rows} rows against at least {self.floor:g} ({self.min_share:.0%} of the trailing median)"
        if self.overridden and self.rows < self.floor:
            return f"{verdict}: let through by the run tag {ACCEPT_LOW_VOLUME_TAG}"
        return verdict


def trailing_row_counts(lake_root: Location, layer: str, table: str, date: dt.date) -> tuple[int, ...]:
    """Row counts of the ``TRAILING_DAYS`` days before ``date`` that are in the lake (a missing day is skipped)."""
    counts = []
    for days_back in range(TRAILING_DAYS, 0, -1):
        path = lake.partition_path(lake_root, layer, table, date - dt.timedelta(days=days_back))
        if lake.exists(path):
            counts.append(lake.read_parquet_metadata(path).num_rows)  # the footer only: no data is read
    return tuple(counts)


def accepts_low_volume(tags: Mapping[str, str], table: str) -> bool:
    """Whether the run's ``ACCEPT_LOW_VOLUME_TAG`` names ``table`` (``*`` names every table)."""
    named = {name.strip() for name in tags.get(ACCEPT_LOW_VOLUME_TAG, "").split(",")}
    return table in named or "*" in named
