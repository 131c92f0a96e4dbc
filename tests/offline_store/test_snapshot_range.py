"""A range of snapshot days in one Delta commit: the same table as one write per day, all or nothing, per-day
lineage in the commit, and the days outside the range never touched."""

import datetime as dt
import re
from pathlib import Path

import pyarrow as pa
import pytest
from offline_lake import CONTRACT, OfflineLake, export_provenance, feature_table, model_checksum, write_features
from pyspark.sql import SparkSession

from spark_jobs import tables
from spark_jobs.contract import DBT_MODEL_CHECKSUM, DBT_MODEL_CHECKSUMS
from spark_jobs.feature_snapshots import (
    InvalidSnapshotError,
    SchemaChangeError,
    commit_days,
    days_predicate,
    snapshot_day,
    snapshot_days,
)
from spark_jobs.training_set import content_fingerprint, model_checksums_by_day

pytestmark = pytest.mark.spark

RANGE = [dt.date(2025, 3, 1) + dt.timedelta(days=i) for i in range(5)]
BEFORE = dt.date(2025, 2, 28)  # a day outside the range, written on its own
CUSTOMERS = [f"c-{i}" for i in range(6)]
# The dbt model changed in the middle of the range: each day's file names the model that made it.
OLD, NEW = model_checksum("customer_features v1"), model_checksum("customer_features v2")
CHECKSUMS = {d: OLD if d < RANGE[2] else NEW for d in [BEFORE, *RANGE]}


def day_rows(spark: SparkSession, lake: OfflineLake, day: dt.date, version: int | None = None):
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(str(lake.store.feature_snapshots)).where(f"snapshot_date = DATE'{day}'")


def export(lake: OfflineLake, days: list[dt.date], customers: list[str] = CUSTOMERS) -> list[tuple[dt.date, Path]]:
    for d in days:
        write_features(lake.root, d, feature_table(customers, d), checksum=CHECKSUMS.get(d, OLD))
    return [(d, lake.features(d)) for d in days]


def fingerprints(spark: SparkSession, lake: OfflineLake, days: list[dt.date]) -> dict[dt.date, str]:
    return {d: content_fingerprint(day_rows(spark, lake, d)) for d in days}


def test_the_predicate_is_a_range_only_when_the_days_are_contiguous():
    march = [dt.date(2025, 3, d) for d in (1, 2, 3)]
    assert days_predicate("day", march[:1]) == "`day` = DATE'2025-03-01'"
    assert days_predicate("day", march) == "`day` >= DATE'2025-03-01' AND `day` <= DATE'2025-03-03'"
    assert days_predicate("day", [march[0], march[2]]) == "`day` IN (DATE'2025-03-01', DATE'2025-03-03')"


def test_a_range_in_one_commit_equals_one_write_per_day_and_reruns_to_the_same_rows(
    spark: SparkSession, data_root: Path
):
    per_day, ranged = OfflineLake(data_root / "per_day"), OfflineLake(data_root / "ranged")
    for d, source in export(per_day, [BEFORE, *RANGE]):
        snapshot_day(spark, d, source, per_day.store, CONTRACT)
    [(_, before)] = export(ranged, [BEFORE])
    snapshot_day(spark, BEFORE, before, ranged.store, CONTRACT)
    outside = fingerprints(spark, ranged, [BEFORE])

    # Given in any order: written oldest first, one SnapshotWrite per day, all of the one new version.
    written = snapshot_days(spark, export(ranged, RANGE)[::-1], ranged.store, CONTRACT, dagster_run_id="backfill")
    assert [w.snapshot_date for w in written] == RANGE and {w.version for w in written} == {1}
    assert [w.rows for w in written] == [len(CUSTOMERS)] * len(RANGE)
    assert tables.latest_version(spark, ranged.store.feature_snapshots) == 1
    assert fingerprints(spark, ranged, RANGE) == fingerprints(spark, per_day, RANGE)
    assert fingerprints(spark, ranged, [BEFORE]) == outside

    # The commit names each day's file, rows and model; a reader that knows one-day commits only finds no day in it.
    meta = tables.commit(spark, ranged.store.feature_snapshots, 1).user_metadata
    assert (meta["snapshot_date_first"], meta["snapshot_date_last"]) == ("2025-03-01", "2025-03-05")
    assert meta["dagster_run_id"] == "backfill" and meta["rows"] == len(CUSTOMERS) * len(RANGE)
    assert commit_days(meta)["2025-03-02"] == {
        "source": str(ranged.features(RANGE[1])),
        "rows": len(CUSTOMERS),
        DBT_MODEL_CHECKSUM: OLD,
        "source_metadata": export_provenance(OLD),
    }
    assert meta[DBT_MODEL_CHECKSUM] == NEW and meta[DBT_MODEL_CHECKSUMS] == [OLD, NEW]
    assert "snapshot_date" not in meta and "source" not in meta
    assert [w.provenance[DBT_MODEL_CHECKSUM] for w in written] == [CHECKSUMS[d] for d in RANGE]
    # The training set's lineage reads the same checksum for every day from either kind of history.
    expected = {d.isoformat(): CHECKSUMS[d] for d in [BEFORE, *RANGE]}
    assert model_checksums_by_day(spark, ranged.store.feature_snapshots, 1) == expected
    assert model_checksums_by_day(spark, per_day.store.feature_snapshots, len(RANGE)) == expected

    # A rerun of the range: one more version, the same rows, no day twice.
    again = snapshot_days(spark, [(d, ranged.features(d)) for d in RANGE], ranged.store, CONTRACT)
    assert {w.version for w in again} == {2}
    assert fingerprints(spark, ranged, RANGE) == fingerprints(spark, per_day, RANGE)
    table = spark.read.format("delta").load(str(ranged.store.feature_snapshots))
    assert table.count() == table.select("customer_id", "snapshot_date").distinct().count() == 6 * len(CUSTOMERS)

    # A range of one day keeps the one-day commit's keys, so its readers read it as before.
    [one] = snapshot_days(spark, [(RANGE[0], ranged.features(RANGE[0]))], ranged.store, CONTRACT)
    meta = tables.commit(spark, ranged.store.feature_snapshots, one.version).user_metadata
    assert meta["snapshot_date"] == "2025-03-01" and meta["source"] == str(ranged.features(RANGE[0]))
    assert meta[DBT_MODEL_CHECKSUM] == OLD and meta["source_metadata"] == export_provenance(OLD)


def test_days_apart_replace_only_themselves(spark: SparkSession, data_root: Path):
    lake = OfflineLake(data_root / "lake")
    snapshot_days(spark, export(lake, RANGE), lake.store, CONTRACT)
    between = fingerprints(spark, lake, [RANGE[1], RANGE[3]])

    # 1, 3 and 5 March again, a customer fewer: the days between them are not in the written data and must stay.
    apart = [RANGE[0], RANGE[2], RANGE[4]]
    written = snapshot_days(spark, export(lake, apart, CUSTOMERS[:-1]), lake.store, CONTRACT)
    assert [w.rows for w in written] == [len(CUSTOMERS) - 1] * 3
    assert fingerprints(spark, lake, [RANGE[1], RANGE[3]]) == between
    assert {d: day_rows(spark, lake, d).count() for d in apart} == dict.fromkeys(apart, len(CUSTOMERS) - 1)


def test_a_range_with_a_bad_day_is_refused_naming_it_and_the_table_stays_as_it_was(
    spark: SparkSession, data_root: Path
):
    lake = OfflineLake(data_root / "lake")
    days = export(lake, RANGE)
    snapshot_days(spark, days, lake.store, CONTRACT)
    before = fingerprints(spark, lake, RANGE)

    third, fourth = RANGE[2], RANGE[3]
    write_features(lake.root, third, feature_table([*CUSTOMERS, "c-0"], third))
    with pytest.raises(InvalidSnapshotError, match="an entity appears twice") as refused:
        snapshot_days(spark, days, lake.store, CONTRACT)
    assert str(refused.value).startswith(f"snapshot of 2025-03-03 ({lake.features(third)}): 7 rows for 6 entities")
    assert "2025-03-01" not in str(refused.value) and "2025-03-04" not in str(refused.value)

    write_features(lake.root, third, feature_table(CUSTOMERS, RANGE[0]))  # another day's rows in the file
    write_features(lake.root, fourth, feature_table([], fourth))  # an empty day: it would erase the day
    with pytest.raises(InvalidSnapshotError) as refused:
        snapshot_days(spark, days, lake.store, CONTRACT)
    assert str(refused.value).splitlines() == [
        f"snapshot of 2025-03-03 ({lake.features(third)}): 6 rows whose snapshot_date is not 2025-03-03",
        f"the snapshot of 2025-03-04 is empty ({lake.features(fourth)}): refusing to erase the day",
    ]

    lake.features(fourth).unlink()
    missing = re.escape(f"no customer_features file for 2025-03-04 ({lake.features(fourth)})")
    with pytest.raises(FileNotFoundError, match=missing):
        snapshot_days(spark, days, lake.store, CONTRACT)

    assert tables.latest_version(spark, lake.store.feature_snapshots) == 0  # nothing refused was written
    assert fingerprints(spark, lake, RANGE) == before


def test_a_range_judges_each_days_schema_as_one_write_per_day_would(spark: SparkSession, data_root: Path):
    lake = OfflineLake(data_root / "lake")
    first, *rest = RANGE
    snapshot_days(spark, export(lake, [first]), lake.store, CONTRACT)

    # The feature model gains a column from 3 March: refused unless asked for.
    days = export(lake, rest)
    with_nps = {d: feature_table(CUSTOMERS, d).append_column("nps_score", pa.array([7.0] * 6)) for d in RANGE}
    for d in RANGE[2:]:
        write_features(lake.root, d, with_nps[d])
    with pytest.raises(SchemaChangeError, match=r"customer_features of 2025-03-03 differ .* added nps_score double"):
        snapshot_days(spark, days, lake.store, CONTRACT)
    # A day without a column that a day before it in the range added is a removal, even with the evolution asked.
    write_features(lake.root, RANGE[4], feature_table(CUSTOMERS, RANGE[4]))
    with pytest.raises(SchemaChangeError, match=r"of 2025-03-05 differ .*: removed nps_score double"):
        snapshot_days(spark, days, lake.store, CONTRACT, evolve_schema=True)
    assert tables.latest_version(spark, lake.store.feature_snapshots) == 0

    # Asked for, the addition is written in the one commit, and the days before it read the column as null.
    write_features(lake.root, RANGE[4], with_nps[RANGE[4]])
    written = snapshot_days(spark, days, lake.store, CONTRACT, evolve_schema=True)
    assert {w.schema_change.describe() for w in written} == {"added nps_score double"}
    table = spark.read.format("delta").load(str(lake.store.feature_snapshots))
    by_day = {r["snapshot_date"]: r["nps_score"] for r in table.select("snapshot_date", "nps_score").collect()}
    assert by_day == {d: None if d < RANGE[2] else 7.0 for d in RANGE}


def test_files_are_matched_to_their_days_whatever_characters_their_paths_hold(spark: SparkSession, data_root: Path):
    """Spark names each file it reads by a percent-encoded URI: a path with a space, a percent sign and a plus still
    finds its day, and one file cannot stand for two days."""
    lake = OfflineLake(data_root / "lake")
    odd = data_root / "exports of 50% + more"
    pairs = []
    for day, source in export(lake, RANGE[:3]):
        moved = odd / f"day {day} +1%.parquet"
        moved.parent.mkdir(parents=True, exist_ok=True)
        source.rename(moved)
        pairs.append((day, moved))
    written = snapshot_days(spark, pairs, lake.store, CONTRACT)
    assert [(w.snapshot_date, w.rows) for w in written] == [(day, len(CUSTOMERS)) for day in RANGE[:3]]
    assert {d: day_rows(spark, lake, d).count() for d in RANGE[:3]} == dict.fromkeys(RANGE[:3], len(CUSTOMERS))
    with pytest.raises(ValueError, match="a file of its own"):
        snapshot_days(spark, [(RANGE[0], pairs[0][1]), (RANGE[1], pairs[0][1])], lake.store, CONTRACT)
