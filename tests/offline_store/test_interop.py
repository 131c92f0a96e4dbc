"""Other clients read the offline store: delta-rs (no JVM) and DuckDB.

DuckDB's own ``delta`` extension is downloaded from DuckDB's extension server at ``INSTALL`` time, which this
machine and CI cannot reach (and no PyPI package ships it for DuckDB 2.0), so DuckDB reads the tables through
delta-rs: as an Arrow dataset of the resolved version, and as the exact Parquet files that version lists.
"""

import datetime as dt
import json
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from offline_lake import CONTRACT, MODEL_CHECKSUM, OfflineLake, end_of, feature_table, write_features, write_labels
from pyspark.sql import SparkSession

from spark_jobs.contract import DBT_MODEL_CHECKSUM
from spark_jobs.feature_snapshots import snapshot_day
from spark_jobs.training_set import run

pytestmark = pytest.mark.spark

DAYS = [dt.date(2025, 3, 1), dt.date(2025, 3, 2)]
CUSTOMERS = [f"c-{i}" for i in range(5)]


def canonical(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object and len(out) and isinstance(out[column].iloc[0], dt.date):
            out[column] = pd.to_datetime(out[column])
        elif pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].astype("datetime64[us]")
    return out[sorted(out.columns)].sort_values(keys).reset_index(drop=True)


def test_delta_rs_and_duckdb_read_what_spark_wrote(spark: SparkSession, data_root: Path):
    lake = OfflineLake(data_root / "lake")
    paths = lake.store
    for d in DAYS:
        write_features(lake.root, d, feature_table(CUSTOMERS, d))
        snapshot_day(spark, d, lake.features(d), paths, CONTRACT, dagster_run_id="interop")
    write_labels(lake.root, DAYS[1], [(c, DAYS[1], end_of(DAYS[1]), i % 2) for i, c in enumerate(CUSTOMERS)])
    built = run(spark, paths, lake.labels, CONTRACT, dagster_run_id="interop-train")

    snapshots = DeltaTable(str(paths.feature_snapshots))
    training = DeltaTable(str(paths.training_set))
    assert (snapshots.version(), training.version()) == (1, built.version)
    assert snapshots.metadata().partition_columns == ["snapshot_date"]

    # Same rows and values as Spark reads, column for column.
    for table, path, keys in (
        (snapshots, paths.feature_snapshots, ["snapshot_date", "customer_id"]),
        (training, paths.training_set, ["prediction_time", "customer_id"]),
    ):
        from_rs = canonical(table.to_pandas(), keys)
        from_spark = canonical(spark.read.format("delta").load(str(path)).toPandas(), keys)
        pd.testing.assert_frame_equal(from_rs, from_spark, check_dtype=False)

    schema = training.to_pyarrow_table().schema
    assert pa.types.is_timestamp(schema.field("prediction_time").type)
    assert schema.field("prediction_time").type.tz is None  # zone-less UTC wall clock, like the rest of the lake
    commit = next(c for c in training.history() if c["version"] == built.version)
    lineage = json.loads(commit["userMetadata"])
    assert lineage["feature_store_version"] == 1 and lineage[DBT_MODEL_CHECKSUM] == MODEL_CHECKSUM

    # Time travel from delta-rs as well.
    assert DeltaTable(str(paths.feature_snapshots), version=0).to_pyarrow_table().num_rows == len(CUSTOMERS)

    con = duckdb.connect()
    con.register("training_set", training.to_pyarrow_dataset())
    rows, leaks = con.execute(
        "select count(*), count(*) filter (where feature_snapshot_date >= cast(prediction_time as date)) "
        "from training_set"
    ).fetchone()
    assert (rows, leaks) == (len(CUSTOMERS), 0)
    files = snapshots.file_uris()  # the Parquet files of the version, as its log lists them
    joined = con.execute(
        "select s.snapshot_date, count(*) as n, sum(s.day_marker) as markers "
        "from read_parquet($files, hive_partitioning = true) s "
        "join training_set t on t.customer_id = s.customer_id and t.feature_snapshot_date = s.snapshot_date "
        "group by 1",
        {"files": files},
    ).fetchall()
    assert joined == [(DAYS[1], len(CUSTOMERS), DAYS[1].toordinal() * len(CUSTOMERS))]
