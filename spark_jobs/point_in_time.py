"""The point-in-time join: every label row joined to the features that were known when it was made.

When is a snapshot known?
-------------------------
A label row carries its prediction time (the contract's ``prediction_time`` column), the moment the prediction
would have been made (any timestamp, not only a day boundary). The snapshot of day ``D`` describes the entity as of
the *end* of ``D``: it is complete
at ``D + 1 day, 00:00:00``, and only from then on may a prediction use it. So a row may use snapshot ``D`` iff::

    D + 1 day (at 00:00:00) <= prediction_time   <=>   D <= date(prediction_time) - 1 day

for every timestamp, midnight included: a prediction at ``2025-03-02 00:00:00`` may use the snapshot of
``2025-03-01`` (complete at that very instant); one at ``2025-03-01 23:59:59.999999`` may only use ``2025-02-28``
or earlier. The row gets the *latest* snapshot on or before that cutoff date, never a later one. Timestamps are
zone-less UTC wall-clock times, like everywhere in the lake (the session's time zone is UTC).

How the join is done (two scans of the history, and still exact)
----------------------------------------------------------------
An as-of join written as a window over every (label, earlier snapshot) pair is quadratic in the history; this
one is not, and it reads the snapshot history twice whatever the labels:

1. **The days, from the key columns alone.** Each label's cutoff is plain date arithmetic. The distinct
   (entity, cutoff) keys of the labels, sorted, cut each entity's timeline into intervals: a key owns the days
   after its entity's previous cutoff, up to its own. Every snapshot day falls into at most one interval of its
   entity, so one pass over the (entity, day) columns, joined to the keys by entity, finds the latest snapshot
   day in every interval, however many labels an entity has. A key's snapshot day is then the latest among its
   own interval and the ones before it (a forward fill over the sorted keys): the latest snapshot on or before
   its cutoff, whether its cutoff day exists, is missing (a late or skipped day), or precedes the entity's first
   snapshot (a sign-up after the cutoff).
2. **The features, read once,** by an equi-join of the history on the resolved (entity, snapshot day).

Label-sized work (the keys, their intervals, the forward fill, the statistics) is done in this process with
Arrow up to ``LOCAL_LABEL_LIMIT`` labels: Spark would spend a job per step on it. Beyond that the same steps run
in Spark, with windows. Up to ``BROADCAST_LABEL_LIMIT`` labels the label side of both scans is broadcast, so
the history is never shuffled.

Labels with no snapshot at or before their cutoff (or none young enough, with ``max_snapshot_age_days``) cannot
be trained on; they are left out of the rows but counted and sampled in the result, never dropped silently.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.contract import FEATURE_SNAPSHOT_DATE, LABEL_SNAPSHOT_DATE, Contract
from spark_jobs.feature_snapshots import feature_columns

CUTOFF = "_cutoff"  # the latest snapshot date a label may use
AFTER = "_after"  # the entity's previous cutoff: a key's interval of snapshot days is (AFTER, CUTOFF]
LATEST = "_latest"  # the latest snapshot day within a key's interval
KEY_ID = "_key"  # a label key's number: an integer groups faster than the entity and the day
# Up to this many label rows, the label-sized steps run in this process with Arrow: Spark would spend a job on
# each. Beyond it they run in Spark (the driver's memory holds a few copies of the labels, not many).
LOCAL_LABEL_LIMIT = 500_000
# Up to this many label rows, the label side of each join is broadcast and the snapshot history streams past it
# without a shuffle. Beyond it Spark plans shuffle joins (still exact, slower).
BROADCAST_LABEL_LIMIT = 2_000_000
SAMPLE_SIZE = 10
EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()  # Arrow's date32 counts days from 1970-01-01


def snapshot_cutoff(prediction_time: Column) -> Column:
    """The latest snapshot date a prediction made at ``prediction_time`` may use: ``date(prediction_time) - 1``."""
    return F.date_sub(F.to_date(prediction_time), 1)


def latest_usable_snapshot_date(prediction_time: dt.datetime) -> dt.date:
    """The same rule in plain Python (the documentation and the tests' oracle)."""
    return prediction_time.date() - dt.timedelta(days=1)


@dataclass(frozen=True)
class PitStats:
    """How every label row fared in the point-in-time join."""

    labels: int
    exact: int  # joined to the snapshot of its cutoff day
    earlier: int  # that day's snapshot is missing: joined to the latest earlier one
    without_snapshot: int  # no usable snapshot at or before the cutoff: left out, reported
    max_snapshot_age_days: int | None  # the oldest snapshot used, in days before its cutoff
    without_snapshot_sample: list[dict[str, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.exact + self.earlier

    def as_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "rows": self.rows,
            "labels_exact_snapshot": self.exact,
            "labels_earlier_snapshot": self.earlier,
            "labels_without_snapshot": self.without_snapshot,
            "max_snapshot_age_days": self.max_snapshot_age_days,
        }


@dataclass
class PitJoin:
    """The joined rows (lazy), their statistics, and the label-sized frames cached to compute them."""

    frame: DataFrame
    stats: PitStats
    feature_columns: list[str]
    cached: list[DataFrame] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for frame in self.cached:
            frame.unpersist()
        self.cached.clear()


def prepare_labels(labels: DataFrame, contract: Contract) -> DataFrame:
    """The label contract's columns, typed: zone-less prediction times, integer labels."""
    missing = [c for c in contract.label_input_columns if c not in labels.columns]
    if missing:
        raise ValueError(f"the labels lack the columns {missing} (have {labels.columns})")
    return labels.select(
        *contract.entity,
        # A zoned timestamp becomes its UTC wall-clock time (the session's zone is UTC).
        F.col(contract.prediction_time).cast("timestamp_ntz").alias(contract.prediction_time),
        F.col(contract.label_as_of).cast("date").alias(LABEL_SNAPSHOT_DATE),
        F.col(contract.label).cast("int").alias(contract.label),
    )


@dataclass(frozen=True)
class _Resolved:
    """Every label row's snapshot day, found: the rows that have one, the statistics, what was cached."""

    usable: DataFrame  # the label rows with FEATURE_SNAPSHOT_DATE (and without CUTOFF)
    stats: PitStats
    first_used: dt.date | None
    last_used: dt.date | None
    cached: list[DataFrame]


def point_in_time_join(
    labels: DataFrame,
    snapshots: DataFrame,
    contract: Contract,
    max_snapshot_age_days: int | None = None,
    label_rows: int | None = None,
    local_label_limit: int = LOCAL_LABEL_LIMIT,
    broadcast_label_limit: int = BROADCAST_LABEL_LIMIT,
) -> PitJoin:
    """Join each label row to the latest snapshot complete at its prediction time (see the module docstring).

    ``labels``: the entity, prediction time, ``label_snapshot_date`` and label (``prepare_labels``);
    ``snapshots``: the entity, the day column and the feature columns, one row per entity and day.
    ``max_snapshot_age_days``: if set, a snapshot older than this many days before the cutoff counts as none.
    ``label_rows``: how many rows ``labels`` holds, if the caller has counted them already.
    ``local_label_limit``, ``broadcast_label_limit``: see ``LOCAL_LABEL_LIMIT`` and ``BROADCAST_LABEL_LIMIT``.
    Call ``release()`` on the result once its frame has been written.
    """
    entity, day = list(contract.entity), contract.as_of
    features = feature_columns(snapshots.schema, contract.snapshot_keys)
    clash = sorted(set(features) & {*contract.training_set_keys, CUTOFF})
    if clash:
        raise ValueError(f"feature columns {clash} collide with the training set's key columns")
    labels = labels.withColumn(CUTOFF, snapshot_cutoff(F.col(contract.prediction_time)))
    rows = labels.count() if label_rows is None else label_rows
    if not rows:
        raise ValueError("no label rows: nothing to build a training set from")
    small = rows <= broadcast_label_limit
    if rows <= local_label_limit:
        resolved = _resolve_here(labels, snapshots, contract, max_snapshot_age_days)
    else:
        resolved = _resolve_in_spark(labels, snapshots, contract, max_snapshot_age_days, small)
    usable = F.broadcast(resolved.usable) if small else resolved.usable
    history = snapshots.withColumnRenamed(day, FEATURE_SNAPSHOT_DATE)
    if resolved.first_used is not None:  # only the days some label uses are read
        used = F.col(FEATURE_SNAPSHOT_DATE).between(F.lit(resolved.first_used), F.lit(resolved.last_used))
        history = history.where(used)
    joined = history.join(usable, [*entity, FEATURE_SNAPSHOT_DATE], "inner")
    return PitJoin(
        frame=joined.select(*contract.training_set_keys, *features),
        stats=resolved.stats,
        feature_columns=features,
        cached=resolved.cached,
    )


def _snapshot_days(
    snapshots: DataFrame, contract: Contract, first_cutoff: dt.date, last_cutoff: dt.date, max_age_days: int | None
) -> DataFrame:
    """The history's (entity, day) pairs that some cutoff in [first_cutoff, last_cutoff] may use: two narrow
    columns, and no day after the last cutoff (nor, with a maximum age, too old for the first)."""
    day = F.col(contract.as_of)
    days = snapshots.where(day <= F.lit(last_cutoff))
    if max_age_days is not None:
        days = days.where(day >= F.lit(first_cutoff - dt.timedelta(days=max_age_days)))
    return days.select(*contract.entity, contract.as_of)


def _latest_in_intervals(days: DataFrame, keys: DataFrame, contract: Contract, group: list[str]) -> DataFrame:
    """The latest snapshot day (``LATEST``) in each key's interval ``(AFTER, CUTOFF]``, by ``group``; keys with
    no snapshot day in their interval are absent. ``keys`` is broadcast by the caller if it is small."""
    day, cutoff, after = F.col(contract.as_of), F.col(CUTOFF), F.col(AFTER)
    in_interval = (day <= cutoff) & (after.isNull() | (day > after))
    # An inner join's condition on both sides: Spark checks it as it probes, so only matches are emitted.
    matched = days.join(keys, list(contract.entity), "inner").where(in_interval)
    return matched.groupBy(*group).agg(F.max(day).alias(LATEST))


def _sample_row(row: dict[str, Any], contract: Contract) -> dict[str, str]:
    when = contract.prediction_time
    return {
        **{c: str(row[c]) for c in contract.entity},
        when: row[when].isoformat(),
        LABEL_SNAPSHOT_DATE: str(row[LABEL_SNAPSHOT_DATE]),
        "latest_usable_snapshot_date": str(row[CUTOFF]),
    }


# --- few labels: the label-sized steps here, with Arrow ---------------------------------------------------------------


def _check_label_ids(nulls_in_time: int, nulls_in_id: int, contract: Contract) -> None:
    if nulls_in_time or nulls_in_id:
        raise ValueError(
            f"{nulls_in_time} label rows lack {contract.prediction_time}, "
            f"{nulls_in_id} lack {'/'.join(contract.entity)}"
        )


def _resolve_here(
    labels: DataFrame, snapshots: DataFrame, contract: Contract, max_snapshot_age_days: int | None
) -> _Resolved:
    entity, when = list(contract.entity), contract.prediction_time
    table = labels.toArrow()
    lacks_id = pc.or_(*[pc.is_null(table[c]) for c in entity]) if len(entity) > 1 else pc.is_null(table[entity[0]])
    _check_label_ids(table[when].null_count, int(pc.sum(lacks_id.cast(pa.int64())).as_py() or 0), contract)
    # The distinct keys, sorted by entity then cutoff.
    keys = table.select([*entity, CUTOFF]).group_by([*entity, CUTOFF]).aggregate([])
    keys = keys.sort_by([(c, "ascending") for c in [*entity, CUTOFF]])
    cutoffs = _days(keys[CUTOFF])
    first_of_entity = _first_of_entity(keys, entity)
    # Each key's interval starts after its entity's previous cutoff (none for the entity's first key).
    after = pa.array(np.roll(cutoffs, 1), pa.int32(), mask=first_of_entity).cast(pa.date32())
    intervals = keys.append_column(AFTER, after).append_column(KEY_ID, pa.array(np.arange(keys.num_rows)))
    entity_fields = [f for f in labels.schema.fields if f.name in entity]
    interval_fields = [T.StructField(c, T.DateType()) for c in (CUTOFF, AFTER)] + [T.StructField(KEY_ID, T.LongType())]
    spark = labels.sparkSession
    intervals_frame = spark.createDataFrame(intervals, T.StructType(entity_fields + interval_fields))
    first, last = (dt.date.fromordinal(int(d) + EPOCH_ORDINAL) for d in (cutoffs.min(), cutoffs.max()))
    days = _snapshot_days(snapshots, contract, first, last, max_snapshot_age_days)
    found = _latest_in_intervals(days, F.broadcast(intervals_frame), contract, [KEY_ID]).toArrow()
    latest = np.full(keys.num_rows, -1, dtype=np.int64)  # -1: no snapshot day in the key's interval
    latest[found[KEY_ID].to_numpy()] = _days(found[LATEST])
    resolved = _fill_forward(latest, first_of_entity)
    if max_snapshot_age_days is not None:
        resolved[cutoffs - resolved > max_snapshot_age_days] = -1
    fsd = pa.array(resolved.astype(np.int32), pa.int32(), mask=resolved < 0).cast(pa.date32())
    labelled = table.join(keys.append_column(FEATURE_SNAPSHOT_DATE, fsd), [*entity, CUTOFF], join_type="left outer")
    used = labelled[FEATURE_SNAPSHOT_DATE]
    usable_schema = T.StructType(
        [f for f in labels.schema.fields if f.name != CUTOFF] + [T.StructField(FEATURE_SNAPSHOT_DATE, T.DateType())]
    )
    usable = labelled.filter(pc.is_valid(used)).select(usable_schema.fieldNames())
    bounds = pc.min_max(used).as_py()
    return _Resolved(
        usable=spark.createDataFrame(usable, usable_schema),
        stats=_stats_here(labelled, contract),
        first_used=bounds["min"],
        last_used=bounds["max"],
        cached=[],
    )


def _days(column: pa.ChunkedArray) -> np.ndarray:
    """A date column as days since 1970-01-01."""
    return column.combine_chunks().cast(pa.int32()).to_numpy().astype(np.int64)


def _first_of_entity(keys: pa.Table, entity: list[str]) -> np.ndarray:
    """For keys sorted by entity: True where a key is its entity's first."""
    first = np.zeros(keys.num_rows, dtype=bool)
    first[:1] = True
    for c in entity:
        values = keys[c].combine_chunks().to_numpy(zero_copy_only=False)
        first[1:] |= values[1:] != values[:-1]
    return first


def _fill_forward(latest: np.ndarray, first_of_entity: np.ndarray) -> np.ndarray:
    """Each key's latest day among its own interval and its entity's earlier ones (-1: none): the latest
    snapshot day on or before its cutoff."""
    position = np.arange(len(latest))
    last_with_day = np.maximum.accumulate(np.where(latest >= 0, position, -1))
    entity_start = np.maximum.accumulate(np.where(first_of_entity, position, 0))
    return np.where(last_with_day >= entity_start, latest[np.maximum(last_with_day, 0)], -1)


def _stats_here(labelled: pa.Table, contract: Contract) -> PitStats:
    used, cutoff = labelled[FEATURE_SNAPSHOT_DATE], labelled[CUTOFF]
    without = labelled.filter(pc.is_null(used))
    order = [(contract.prediction_time, "ascending"), *[(c, "ascending") for c in contract.entity]]
    sample = without.sort_by(order).slice(0, SAMPLE_SIZE).to_pylist()
    return PitStats(
        labels=labelled.num_rows,
        exact=int(pc.sum(pc.equal(used, cutoff).cast(pa.int64())).as_py() or 0),
        earlier=int(pc.sum(pc.less(used, cutoff).cast(pa.int64())).as_py() or 0),
        without_snapshot=without.num_rows,
        max_snapshot_age_days=pc.max(pc.days_between(used, cutoff)).as_py(),
        without_snapshot_sample=[_sample_row(r, contract) for r in sample],
    )


# --- many labels: the same steps in Spark -----------------------------------------------------------------------------


def _resolve_in_spark(
    labels: DataFrame, snapshots: DataFrame, contract: Contract, max_snapshot_age_days: int | None, broadcast: bool
) -> _Resolved:
    entity, when = list(contract.entity), contract.prediction_time
    labels = labels.persist(StorageLevel.MEMORY_AND_DISK)
    cached = [labels]
    no_id = F.greatest(*[F.col(c).isNull() for c in entity]) if len(entity) > 1 else F.col(entity[0]).isNull()
    bounds = labels.agg(
        F.sum(F.col(when).isNull().cast("int")).alias("no_time"),
        F.sum(no_id.cast("int")).alias("no_id"),
        F.min(CUTOFF).alias("first"),
        F.max(CUTOFF).alias("last"),
    ).first()
    assert bounds is not None
    try:
        _check_label_ids(bounds["no_time"], bounds["no_id"], contract)
    except ValueError:
        labels.unpersist()
        raise
    by_entity = Window.partitionBy(*entity).orderBy(CUTOFF)
    keys = labels.select(*entity, CUTOFF).distinct().withColumn(AFTER, F.lag(CUTOFF).over(by_entity))
    keys = keys.persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(keys)
    days = _snapshot_days(snapshots, contract, bounds["first"], bounds["last"], max_snapshot_age_days)
    found = _latest_in_intervals(days, F.broadcast(keys) if broadcast else keys, contract, [*entity, CUTOFF])
    cutoff, fsd = F.col(CUTOFF), F.col(FEATURE_SNAPSHOT_DATE)
    so_far = by_entity.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    resolution = keys.join(found, [*entity, CUTOFF], "left").select(
        *entity, CUTOFF, F.last(LATEST, ignorenulls=True).over(so_far).alias(FEATURE_SNAPSHOT_DATE)
    )
    if max_snapshot_age_days is not None:
        young = F.datediff(cutoff, fsd) <= max_snapshot_age_days
        resolution = resolution.withColumn(FEATURE_SNAPSHOT_DATE, F.when(young, fsd))
    labelled = labels.join(resolution, [*entity, CUTOFF], "left").persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(labelled)
    counts = labelled.agg(
        F.count(F.lit(1)).alias("labels"),
        F.sum((fsd == cutoff).cast("int")).alias("exact"),
        F.sum((fsd < cutoff).cast("int")).alias("earlier"),
        F.sum(fsd.isNull().cast("int")).alias("without"),
        F.max(F.datediff(cutoff, fsd)).alias("max_age"),
        F.min(fsd).alias("first_used"),
        F.max(fsd).alias("last_used"),
    ).first()
    assert counts is not None
    sample = (
        labelled.where(fsd.isNull()).orderBy(when, *entity).limit(SAMPLE_SIZE).collect() if counts["without"] else []
    )
    stats = PitStats(
        labels=int(counts["labels"]),
        exact=int(counts["exact"] or 0),
        earlier=int(counts["earlier"] or 0),
        without_snapshot=int(counts["without"] or 0),
        max_snapshot_age_days=None if counts["max_age"] is None else int(counts["max_age"]),
        without_snapshot_sample=[_sample_row(r.asDict(), contract) for r in sample],
    )
    return _Resolved(
        usable=labelled.where(fsd.isNotNull()).drop(CUTOFF),
        stats=stats,
        first_used=counts["first_used"],
        last_used=counts["last_used"],
        cached=cached,
    )
