"""The Delta feature snapshots: idempotent days, commit lineage, schema enforcement and its one evolution."""

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest
from offline_lake import CONTRACT, OfflineLake, export_provenance, feature_table, model_checksum, write_features
from pyspark.sql import SparkSession

from spark_jobs import tables
from spark_jobs.contract import DBT_MODEL_CHECKSUM
from spark_jobs.feature_snapshots import InvalidSnapshotError, SchemaChangeError, snapshot_day
from spark_jobs.training_set import content_fingerprint

pytestmark = pytest.mark.spark

DAYS = [dt.date(2025, 3, 1), dt.date(2025, 3, 2)]
CUSTOMERS = [f"c-{i}" for i in range(6)]


@pytest.fixture
def lake(data_root: Path) -> OfflineLake:
    return OfflineLake(data_root / "lake")


def day_rows(spark: SparkSession, lake: OfflineLake, day: dt.date, version: int | None = None):
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(str(lake.store.feature_snapshots)).where(f"snapshot_date = DATE'{day}'")


def test_rewriting_a_day_replaces_that_day_only_and_names_run_and_dbt_model(spark: SparkSession, lake: OfflineLake):
    v1, v2 = model_checksum("customer_features v1"), model_checksum("customer_features v2")
    for d in DAYS:
        write_features(lake.root, d, feature_table(CUSTOMERS, d), checksum=v1)
        snapshot_day(spark, d, lake.features(d), lake.store, CONTRACT, dagster_run_id=f"run-{d.day}")
    untouched = content_fingerprint(day_rows(spark, lake, DAYS[1]))
    assert tables.commit(spark, lake.store.feature_snapshots, 0).user_metadata[DBT_MODEL_CHECKSUM] == v1

    # The dbt model changed and 1 March is exported again, a customer fewer: rerunning the day replaces it exactly,
    # and the commits name the new model, as the new file does.
    write_features(lake.root, DAYS[0], feature_table(CUSTOMERS[:-1], DAYS[0]), checksum=v2)
    source = lake.features(DAYS[0])
    again = snapshot_day(spark, DAYS[0], source, lake.store, CONTRACT, dagster_run_id="run-rerun")
    rerun = snapshot_day(spark, DAYS[0], source, lake.store, CONTRACT, dagster_run_id="run-rerun-2")

    assert (again.version, rerun.version) == (2, 3)
    assert day_rows(spark, lake, DAYS[0]).count() == len(CUSTOMERS) - 1
    assert content_fingerprint(day_rows(spark, lake, DAYS[0], version=2)) == content_fingerprint(
        day_rows(spark, lake, DAYS[0], version=3)
    )
    assert content_fingerprint(day_rows(spark, lake, DAYS[1])) == untouched
    assert day_rows(spark, lake, DAYS[0], version=1).count() == len(CUSTOMERS)  # time travel to the old day

    meta = tables.commit(spark, lake.store.feature_snapshots, 3).user_metadata
    assert meta["dagster_run_id"] == "run-rerun-2" and meta[DBT_MODEL_CHECKSUM] == v2
    assert meta["source"] == str(source) and meta["source_metadata"] == export_provenance(v2)
    assert meta["snapshot_date"] == "2025-03-01" and meta["rows"] == len(CUSTOMERS) - 1
    history = tables.history(spark, lake.store.feature_snapshots)
    assert [c.version for c in history] == [3, 2, 1, 0]
    assert history[0].operation == "WRITE"
    detail = spark.sql(f"DESCRIBE DETAIL {tables.sql_path(lake.store.feature_snapshots)}").first()
    assert detail["partitionColumns"] == ["snapshot_date"]

    # A hand-made file, without the export's provenance: the lineage is unknown (null), never another day's.
    write_features(lake.root, DAYS[1], feature_table(CUSTOMERS, DAYS[1]), checksum=None)
    hand_made = snapshot_day(spark, DAYS[1], lake.features(DAYS[1]), lake.store, CONTRACT)
    meta = tables.commit(spark, lake.store.feature_snapshots, hand_made.version).user_metadata
    assert DBT_MODEL_CHECKSUM in meta and meta[DBT_MODEL_CHECKSUM] is None and meta["source_metadata"] == {}


def test_schema_changes_are_refused_unless_an_explicit_additive_evolution(spark: SparkSession, lake: OfflineLake):
    first, second = DAYS
    write_features(lake.root, first, feature_table(CUSTOMERS, first))
    snapshot_day(spark, first, lake.features(first), lake.store, CONTRACT)

    base = feature_table(CUSTOMERS, second)
    added = base.append_column("nps_score", pa.array([7.0] * len(CUSTOMERS)))
    write_features(lake.root, second, added)
    with pytest.raises(SchemaChangeError, match=r"added nps_score double.*evolve_schema"):
        snapshot_day(spark, second, lake.features(second), lake.store, CONTRACT)

    write_features(lake.root, second, base.drop_columns(["logins_30d"]))
    with pytest.raises(SchemaChangeError, match="removed logins_30d double"):  # evolution is additive only
        snapshot_day(spark, second, lake.features(second), lake.store, CONTRACT, evolve_schema=True)

    retyped = base.set_column(
        base.schema.get_field_index("tenure_days"), "tenure_days", base["tenure_days"].cast(pa.int32())
    )
    write_features(lake.root, second, retyped)
    with pytest.raises(SchemaChangeError, match="retyped tenure_days bigint -> int"):
        snapshot_day(spark, second, lake.features(second), lake.store, CONTRACT, evolve_schema=True)
    assert tables.latest_version(spark, lake.store.feature_snapshots) == 0  # nothing refused was written

    write_features(lake.root, second, added)
    done = snapshot_day(spark, second, lake.features(second), lake.store, CONTRACT, evolve_schema=True)
    assert done.schema_change.added == [("nps_score", "double")]
    table = spark.read.format("delta").load(str(lake.store.feature_snapshots))
    by_day = {r["snapshot_date"]: r["nps_score"] for r in table.select("snapshot_date", "nps_score").collect()}
    assert by_day == {first: None, second: 7.0}
    assert json.loads(json.dumps(done.commit_metadata))["schema_change"] == "added nps_score double"


def test_a_file_that_is_not_one_snapshot_of_the_day_is_refused(spark: SparkSession, lake: OfflineLake):
    first = DAYS[0]
    write_features(lake.root, first, feature_table(CUSTOMERS, DAYS[1]))  # the wrong day inside
    with pytest.raises(InvalidSnapshotError, match="snapshot_date is not 2025-03-01"):
        snapshot_day(spark, first, lake.features(first), lake.store, CONTRACT)
    write_features(lake.root, first, feature_table([*CUSTOMERS, "c-0"], first))
    with pytest.raises(InvalidSnapshotError, match="an entity appears twice"):
        snapshot_day(spark, first, lake.features(first), lake.store, CONTRACT)
    with pytest.raises(FileNotFoundError, match="no customer_features file at"):
        snapshot_day(spark, DAYS[1], lake.features(DAYS[1]), lake.store, CONTRACT)
    assert not tables.is_delta_table(spark, lake.store.feature_snapshots)
