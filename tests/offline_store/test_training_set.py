"""The training-set job on a hand-built lake: lineage in the commit, the reported leftovers, and the identical
rebuild from a past feature-store version after the snapshots moved on (a late snapshot arrived, a day was
rewritten)."""

import datetime as dt
from pathlib import Path

import pytest
from offline_lake import CONTRACT, OfflineLake, end_of, feature_table, model_checksum, write_features, write_labels
from pyspark.sql import SparkSession

from spark_jobs import tables
from spark_jobs.contract import DBT_MODEL_CHECKSUM, DBT_MODEL_CHECKSUMS
from spark_jobs.feature_snapshots import snapshot_day
from spark_jobs.training_set import (
    LabelsChangedError,
    build_training_set,
    content_fingerprint,
    rebuild_training_set,
    run,
)

pytestmark = pytest.mark.spark

D1, D2, D3 = dt.date(2025, 3, 1), dt.date(2025, 3, 2), dt.date(2025, 3, 3)
CUSTOMERS = ["c-1", "c-2", "c-3"]


def rows_of(frame) -> list[tuple]:
    return sorted(tuple(r) for r in frame.select(sorted(frame.columns)).collect())


def test_build_records_lineage_and_a_rebuild_from_that_version_is_identical(spark: SparkSession, data_root: Path):
    lake = OfflineLake(data_root / "lake")
    paths = lake.store
    # The dbt model changed between the two days: each export names the model that made it.
    v1, v2 = model_checksum("customer_features v1"), model_checksum("customer_features v2")
    write_features(lake.root, D1, feature_table(CUSTOMERS, D1), checksum=v1)
    # c-3's snapshot of 2 March is late: the export of that day holds c-1 and c-2 only, for now.
    write_features(lake.root, D2, feature_table(CUSTOMERS[:2], D2), checksum=v2)
    for d in (D1, D2):
        snapshot_day(spark, d, lake.features(d), paths, CONTRACT, dagster_run_id="features-run")
    write_labels(
        lake.root,
        D3,
        [
            ("c-1", D2, end_of(D2), 1),  # 3 March 00:00: may use 2 March
            ("c-2", D2, end_of(D2) - dt.timedelta(microseconds=1), 0),  # a moment too early: 1 March, exact
            ("c-3", D2, end_of(D2), 0),  # 2 March is missing for c-3: 1 March
            ("c-4", D2, end_of(D2), 1),  # no snapshot ever: reported, not trained on
        ],
    )

    first = run(spark, paths, lake.labels, CONTRACT, dagster_run_id="training-run-1", churn_horizon_days=30)
    assert first.version == 0 and first.feature_store_version == 1
    assert (first.stats.labels, first.stats.exact, first.stats.earlier, first.stats.without_snapshot) == (4, 2, 1, 1)
    assert first.future_feature_rows == 0
    assert [s["customer_id"] for s in first.stats.without_snapshot_sample] == ["c-4"]

    table = spark.read.format("delta").load(str(paths.training_set))
    assert table.columns[:5] == [
        "customer_id",
        "prediction_time",
        "label_snapshot_date",
        "churned",
        "feature_snapshot_date",
    ]
    assert "day_marker" in table.columns and "plan" in table.columns
    used = {r["customer_id"]: r["feature_snapshot_date"] for r in table.collect()}
    assert used == {"c-1": D2, "c-2": D1, "c-3": D1}
    assert dict(table.dtypes)["prediction_time"] == "timestamp_ntz"

    meta = tables.commit(spark, paths.training_set, 0).user_metadata
    assert meta["feature_store_version"] == 1 and meta["dagster_run_id"] == "training-run-1"
    assert meta["labels_without_snapshot"] == 1 and meta["rows"] == 3
    # The exact checksums of the exported files, through the snapshot commits: the newest day's, and all in day order.
    assert meta[DBT_MODEL_CHECKSUM] == v2 and meta[DBT_MODEL_CHECKSUMS] == [v1, v2]
    assert meta["churn_horizon_days"] == 30  # as the caller said: the job reads no settings
    assert meta["labels_path"] == str(lake.labels)
    original = rows_of(spark.read.format("delta").option("versionAsOf", 0).load(str(paths.training_set)))

    # The snapshots move on: c-3's late snapshot of 2 March lands in a hand-made file (no dbt provenance), and
    # 1 March is re-exported by the current model with new values.
    write_features(lake.root, D2, feature_table(CUSTOMERS, D2), checksum=None)
    snapshot_day(spark, D2, lake.features(D2), paths, CONTRACT)
    write_features(lake.root, D1, feature_table(CUSTOMERS, D1).drop_columns(["region"]).append_column(
        "region", feature_table(["c-9"] * 3, D1)["plan"]), checksum=v2)  # fmt: skip
    snapshot_day(spark, D1, lake.features(D1), paths, CONTRACT)
    second = run(spark, paths, lake.labels, CONTRACT, dagster_run_id="training-run-2")
    assert second.version == 1 and second.feature_store_version == 3
    # The newest day's lineage is unknown, and said so: no other day's checksum stands in for it.
    assert second.commit_metadata[DBT_MODEL_CHECKSUM] is None
    assert second.commit_metadata[DBT_MODEL_CHECKSUMS] == [v2, None]
    assert (second.stats.exact, second.stats.earlier) == (3, 0)  # c-3 now finds its 2 March snapshot
    assert rows_of(spark.read.format("delta").load(str(paths.training_set))) != original

    # Version 0 comes back exactly, through time travel to feature-store version 1.
    join, rebuilt_meta = rebuild_training_set(spark, 0, paths, CONTRACT)
    assert rebuilt_meta["feature_store_version"] == 1
    assert rows_of(join.frame) == original
    assert content_fingerprint(join.frame) == first.fingerprint
    join.release()
    join, version, _ = build_training_set(spark, paths, lake.labels, CONTRACT, feature_store_version=1)
    assert version == 1 and content_fingerprint(join.frame) == first.fingerprint
    join.release()

    # Relabelled history cannot be rebuilt identically: say so instead of returning something else.
    write_labels(lake.root, D3, [("c-1", D2, end_of(D2), 0)])
    with pytest.raises(LabelsChangedError, match="changed since version 0"):
        rebuild_training_set(spark, 0, paths, CONTRACT)


def test_a_training_set_as_of_a_day_leaves_out_the_labels_that_matured_later(spark: SparkSession, data_root: Path):
    lake = OfflineLake(data_root / "lake")
    write_features(lake.root, D1, feature_table(CUSTOMERS, D1), checksum=None)
    snapshot_day(spark, D1, lake.features(D1), lake.store, CONTRACT)
    write_labels(lake.root, D2, [("c-1", D1, end_of(D1), 1)])  # matured on 2 March
    write_labels(lake.root, D3, [("c-2", D1, end_of(D1), 0), ("c-3", D1, end_of(D1), 1)])  # on 3 March

    as_of = run(spark, lake.store, lake.labels, CONTRACT, labels_matured_by=D2)
    assert as_of.stats.labels == 1
    assert as_of.commit_metadata["labels_last_partition"] == str(D2)
    everything = run(spark, lake.store, lake.labels, CONTRACT)
    assert everything.stats.labels == 3
    # The as-of version rebuilds identically: its commit names the label partitions it read.
    join, _ = rebuild_training_set(spark, as_of.version, lake.store, CONTRACT)
    assert content_fingerprint(join.frame) == as_of.fingerprint
    join.release()


def test_a_store_without_snapshots_is_named_in_a_clear_error(spark: SparkSession, data_root: Path):
    lake = OfflineLake(data_root / "lake")
    write_labels(lake.root, D3, [("c-1", D2, end_of(D2), 1)])
    for attempt in (
        lambda: run(spark, lake.store, lake.labels, CONTRACT),
        lambda: build_training_set(spark, lake.store, lake.labels, CONTRACT, feature_store_version=0),
    ):
        with pytest.raises(FileNotFoundError, match=f"no Delta table at {lake.store.feature_snapshots}"):
            attempt()
