"""Leakage tests of the point-in-time join, on hand-built frames that an off-by-one in either direction fails."""

import dataclasses
import datetime as dt
import random
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from offline_lake import CONTRACT, feature_table, label_table
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from spark_jobs.point_in_time import (
    PitStats,
    latest_usable_snapshot_date,
    point_in_time_join,
    prepare_labels,
    snapshot_cutoff,
)

pytestmark = pytest.mark.spark

D = dt.date(2025, 3, 1)
T = dt.datetime


def day(offset: int) -> dt.date:
    return D + dt.timedelta(days=offset)


def snapshots_frame(spark: SparkSession, by_customer: dict[str, list[dt.date]]) -> DataFrame:
    tables = [feature_table([c], d) for c, days in by_customer.items() for d in days]
    return spark.createDataFrame(pa.concat_tables(tables).to_pandas())


def labels_frame(spark: SparkSession, rows: list[tuple[str, dt.datetime]]) -> DataFrame:
    table = label_table([(c, t.date(), t, i % 2) for i, (c, t) in enumerate(rows)])
    return prepare_labels(spark.createDataFrame(table.to_pandas()), CONTRACT)


Joined = Callable[..., tuple[dict[tuple[str, dt.datetime], Row], PitStats]]


# The three ways the join runs, by how many labels there are: label-sized steps in this process, or in Spark
# with the labels broadcast, or in Spark with shuffle joins.
WAYS = {
    "labels_here": {},
    "labels_in_spark": {"local_label_limit": 0},
    "labels_shuffled": {"local_label_limit": 0, "broadcast_label_limit": 0},
}


@pytest.fixture(params=list(WAYS))
def joined(request: pytest.FixtureRequest, spark: SparkSession) -> Joined:
    """The join, each way it can run."""
    way = WAYS[request.param]

    def join_them(snapshots: dict[str, list[dt.date]], labels: list[tuple[str, dt.datetime]], **kw: Any):
        labels_df, snapshots_df = labels_frame(spark, labels), snapshots_frame(spark, snapshots)
        join = point_in_time_join(labels_df, snapshots_df, CONTRACT, **way, **kw)
        rows = {(r["customer_id"], r["prediction_time"]): r for r in join.frame.collect()}
        join.release()
        return rows, join.stats

    return join_them


@pytest.mark.parametrize(
    ("prediction_time", "expected"),
    [
        (T(2025, 3, 2, 0, 0, 0), dt.date(2025, 3, 1)),  # the very instant the 1 March snapshot completes
        (T(2025, 3, 2, 0, 0, 0, 1), dt.date(2025, 3, 1)),
        (T(2025, 3, 1, 23, 59, 59, 999999), dt.date(2025, 2, 28)),  # one microsecond too early for 1 March
        (T(2025, 3, 1, 0, 0, 0), dt.date(2025, 2, 28)),
        (T(2025, 3, 1, 12, 0, 0), dt.date(2025, 2, 28)),
        (T(2024, 3, 1, 6, 0, 0), dt.date(2024, 2, 29)),  # leap day
        (T(2025, 1, 1, 0, 0, 0), dt.date(2024, 12, 31)),  # year boundary
    ],
)
def test_cutoff_rule_in_python_and_spark_agree(spark: SparkSession, prediction_time: dt.datetime, expected: dt.date):
    assert latest_usable_snapshot_date(prediction_time) == expected
    frame = spark.createDataFrame([(prediction_time,)], "t timestamp_ntz")
    assert frame.select(snapshot_cutoff(F.col("t")).alias("c")).first()["c"] == expected


def test_a_label_uses_the_snapshot_completed_by_its_prediction_time_never_a_later_one(joined: Joined):
    # c1 has a snapshot every day around the cutoff, so an off-by-one either way picks a different day.
    snaps = {"c-1": [day(-2), day(-1), day(0), day(1), day(2)]}
    labels = [
        ("c-1", T(2025, 3, 2, 0, 0, 0)),  # may use 1 March, exactly complete
        ("c-1", T(2025, 3, 1, 23, 59, 59, 999999)),  # may not: 28 February
        ("c-1", T(2025, 3, 1, 0, 0, 0)),  # 28 February
        ("c-1", T(2025, 3, 2, 13, 30, 0)),  # 1 March; the 2 March snapshot is still being made
        ("c-1", T(2025, 3, 3, 0, 0, 0)),  # 2 March
    ]
    rows, stats = joined(snaps, labels)
    expected = [day(0), day(-1), day(-1), day(0), day(1)]
    for (customer, time), want in zip(labels, expected, strict=True):
        row = rows[(customer, time)]
        assert row["feature_snapshot_date"] == want, time
        assert row["day_marker"] == want.toordinal(), "the features must come from the snapshot named"
        assert row["feature_snapshot_date"] < time.date()  # the leak invariant, stated once more
    assert (stats.labels, stats.exact, stats.earlier, stats.without_snapshot) == (5, 5, 0, 0)


def test_a_missing_or_late_snapshot_falls_back_to_the_latest_earlier_one(joined: Joined):
    # c2's snapshot of 1 March has not arrived; 2 March's has. A nearest-day join would take 2 March (the future).
    snaps = {"c-2": [day(-3), day(-1), day(1)]}
    labels = [("c-2", T(2025, 3, 2, 6, 0, 0)), ("c-2", T(2025, 2, 28, 6, 0, 0)), ("c-2", T(2025, 3, 3, 0, 0, 0))]
    rows, stats = joined(snaps, labels)
    assert rows[labels[0]]["feature_snapshot_date"] == day(-1)
    assert rows[labels[0]]["day_marker"] == day(-1).toordinal()
    assert rows[labels[1]]["feature_snapshot_date"] == day(-3)  # 26 Feb: its cutoff, 27 Feb, is missing
    assert rows[labels[2]]["feature_snapshot_date"] == day(1)  # its own cutoff exists: exact
    assert (stats.exact, stats.earlier, stats.max_snapshot_age_days) == (1, 2, 1)


def test_a_customer_without_a_snapshot_before_the_cutoff_is_reported_not_silently_dropped(joined: Joined):
    # c3 signed up on 1 March: its first snapshot is the cutoff day's *successor* for this label.
    snaps = {"c-3": [day(0), day(1)], "c-4": [day(-1)]}
    labels = [("c-3", T(2025, 3, 1, 18, 0, 0)), ("c-4", T(2025, 3, 1, 18, 0, 0)), ("c-5", T(2025, 3, 2, 0, 0, 0))]
    rows, stats = joined(snaps, labels)
    assert set(rows) == {labels[1]}  # c-4 only; c-5 has no snapshot at all
    assert stats.without_snapshot == 2 and stats.labels == 3 and stats.rows == 1
    assert [s["customer_id"] for s in stats.without_snapshot_sample] == ["c-3", "c-5"]
    assert stats.without_snapshot_sample[0]["latest_usable_snapshot_date"] == "2025-02-28"


def test_max_snapshot_age_treats_a_stale_snapshot_as_none(joined: Joined):
    snaps = {"c-6": [day(-10)], "c-7": [day(-3)]}
    labels = [("c-6", T(2025, 3, 2, 0, 0, 0)), ("c-7", T(2025, 3, 2, 0, 0, 0))]
    rows, stats = joined(snaps, labels)
    assert rows[labels[0]]["feature_snapshot_date"] == day(-10) and stats.max_snapshot_age_days == 10
    rows, stats = joined(snaps, labels, max_snapshot_age_days=7)
    assert set(rows) == {labels[1]} and stats.without_snapshot == 1


def test_labels_sharing_a_customer_and_cutoff_each_get_a_row(joined: Joined):
    snaps = {"c-8": [day(-1), day(0)]}
    labels = [("c-8", T(2025, 3, 2, 1, 0, 0)), ("c-8", T(2025, 3, 2, 23, 0, 0))]
    rows, stats = joined(snaps, labels)
    assert {r["feature_snapshot_date"] for r in rows.values()} == {day(0)} and stats.rows == 2


@pytest.mark.parametrize("max_age", [None, 2])
def test_random_histories_match_a_brute_force_oracle(joined: Joined, max_age: int | None):
    """Many customers with gaps, label times on and around midnights: the join equals the definition."""
    rng = random.Random(7)
    days = [day(i) for i in range(-12, 8)]
    snaps = {f"r-{i}": sorted(d for d in days if rng.random() < 0.6) for i in range(40)}
    labels = []
    for _ in range(400):
        moment = T.combine(rng.choice(days), dt.time()) + dt.timedelta(days=1)
        moment += rng.choice([dt.timedelta(0), -dt.timedelta(microseconds=1), dt.timedelta(hours=rng.randint(1, 23))])
        labels.append((f"r-{rng.randrange(42)}", moment))  # r-40, r-41 have no snapshot at all
    labels = list(dict.fromkeys(labels))
    rows, stats = joined(snaps, labels, max_snapshot_age_days=max_age)

    def oracle(customer: str, time: dt.datetime) -> dt.date | None:
        usable = [
            d for d in snaps.get(customer, []) if dt.datetime.combine(d + dt.timedelta(days=1), dt.time()) <= time
        ]
        latest = max(usable, default=None)
        too_old = latest and max_age is not None and (latest_usable_snapshot_date(time) - latest).days > max_age
        return None if too_old else latest

    expected = {key: oracle(*key) for key in labels}
    assert {k: r["feature_snapshot_date"] for k, r in rows.items()} == {k: v for k, v in expected.items() if v}
    assert all(r["day_marker"] == r["feature_snapshot_date"].toordinal() for r in rows.values())
    assert stats.without_snapshot == sum(v is None for v in expected.values()) > 0
    assert stats.earlier > 0 and stats.exact > 0
    ages = [(latest_usable_snapshot_date(t) - v).days for (_, t), v in expected.items() if v]
    assert stats.max_snapshot_age_days == max(ages) and (max_age is None or max(ages) == max_age)


@pytest.mark.parametrize("way", list(WAYS))
def test_an_entity_of_two_columns_is_one_entity_only_when_both_match(spark: SparkSession, way: str):
    # Sorted, (a, y) follows (a, x) and (c, z) follows (b, z): a key told apart by one column alone would take its
    # neighbour's snapshot.
    contract = dataclasses.replace(CONTRACT, entity=("store", "item"))
    snapshots = spark.createDataFrame(
        [("a", "x", day(-2), day(-2).toordinal()), ("b", "z", day(-1), day(-1).toordinal())],
        "store string, item string, snapshot_date date, day_marker long",
    )
    at = T(2025, 3, 2, 6, 0, 0)  # cutoff: 1 March
    labels = spark.createDataFrame(
        [(s, i, at.date(), at, 1) for s, i in [("a", "x"), ("a", "y"), ("b", "z"), ("c", "z")]],
        "store string, item string, snapshot_date date, prediction_time timestamp_ntz, churned int",
    )
    join = point_in_time_join(prepare_labels(labels, contract), snapshots, contract, **WAYS[way])
    rows = {(r["store"], r["item"]): (r["feature_snapshot_date"], r["day_marker"]) for r in join.frame.collect()}
    join.release()
    assert rows == {("a", "x"): (day(-2), day(-2).toordinal()), ("b", "z"): (day(-1), day(-1).toordinal())}
    assert (join.stats.earlier, join.stats.without_snapshot) == (2, 2)
    assert [(s["store"], s["item"]) for s in join.stats.without_snapshot_sample] == [("a", "y"), ("c", "z")]


@pytest.mark.parametrize("way", list(WAYS))
def test_labels_without_an_entity_or_a_time_are_refused_with_their_counts(spark: SparkSession, way: str):
    labels = labels_frame(spark, [("c-1", T(2025, 3, 2)), ("c-2", T(2025, 3, 2))])
    labels = labels.withColumn("customer_id", F.when(F.col("customer_id") == "c-1", F.col("customer_id")))
    snapshots = snapshots_frame(spark, {"c-1": [day(0)]})
    with pytest.raises(ValueError, match="0 label rows lack prediction_time, 1 lack customer_id"):
        point_in_time_join(labels, snapshots, CONTRACT, **WAYS[way])
