"""Hand-built inputs of the offline store, in the dbt exports' exact file contracts.

Every feature value encodes the customer and the day it describes (``day_marker = day ordinal``), so a test can
tell from any joined row which snapshot it came from, whatever ``feature_snapshot_date`` claims. A features file
carries the provenance the dbt export writes into its Parquet metadata, with a checksum the test chooses, so the
test can follow that exact value into the snapshot and training-set commits.
"""

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from dagster_project.lake import offline_store, partition_path, table_dir, write_partition_atomically
from spark_jobs.contract import CATEGORICAL, DBT_MODEL_CHECKSUM, NUMERIC, Contract, Feature
from spark_jobs.paths import OfflineStorePaths

PLANS = ["basic", "standard", "premium"]
# The dbt exports' contract, spelled out: a test that fails when the layout moves is the point.
FEATURES_LAYER, CUSTOMER_FEATURES, CHURN_LABELS = "features", "customer_features", "churn_labels"
# The problem these exports belong to, declared as its dbt project would: the example's names, and the features
# ``feature_table`` writes.
CONTRACT = Contract(
    entity=("customer_id",),
    features_model=CUSTOMER_FEATURES,
    as_of="snapshot_date",
    features=(
        Feature("day_marker", NUMERIC),
        Feature("tenure_days", NUMERIC),
        Feature("monthly_price", NUMERIC),
        Feature("logins_30d", NUMERIC),
        Feature("plan", CATEGORICAL),
        Feature("region", CATEGORICAL),
    ),
    feature_set_version="1",
    labels_model=CHURN_LABELS,
    label_as_of="snapshot_date",
    prediction_time="prediction_time",
    label="churned",
    horizon_days=30,
    source="tests/offline_store/offline_lake.py",
)


def model_checksum(definition: str) -> str:
    """A checksum shaped like dbt's (the sha256 of the model's SQL), for a model definition named by a test."""
    return hashlib.sha256(definition.encode()).hexdigest()


# The checksum of the dbt model behind the exports a test does not single out.
MODEL_CHECKSUM = model_checksum("customer_features v1")


@dataclass(frozen=True)
class OfflineLake:
    """A lake as the offline store's assets see it: the exports they read and the store they write."""

    root: Path

    def features(self, day: dt.date) -> Path:
        """The day's ``customer_features`` export (one Parquet file)."""
        return partition_path(self.root, FEATURES_LAYER, CUSTOMER_FEATURES, day)

    @property
    def labels(self) -> Path:
        """The folder of the daily label partitions."""
        return table_dir(self.root, FEATURES_LAYER, CHURN_LABELS)

    @property
    def store(self) -> OfflineStorePaths:
        return offline_store(self.root)


def feature_table(customers: list[str], day: dt.date, extra: dict[str, pa.Array] | None = None) -> pa.Table:
    """One day of ``customer_features``: the keys, then features (numbers and strings, as dbt exports them)."""
    n = len(customers)
    index = [int(c.split("-")[-1]) if c.split("-")[-1].isdigit() else i for i, c in enumerate(customers)]
    columns = {
        "customer_id": pa.array(customers, pa.string()),
        "snapshot_date": pa.array([day] * n, pa.date32()),
        "day_marker": pa.array([day.toordinal()] * n, pa.int64()),
        "tenure_days": pa.array([(day - dt.date(2024, 12, 1)).days + i for i in index], pa.int64()),
        "monthly_price": pa.array([9.99 + (i % 3) * 6 for i in index], pa.float64()),
        "logins_30d": pa.array([float((i * 7 + day.day) % 31) for i in index], pa.float64()),
        "plan": pa.array([PLANS[i % 3] for i in index], pa.string()),
        "region": pa.array(["north" if i % 2 else "south" for i in index], pa.string()),
    }
    columns.update(extra or {})
    return pa.table(columns)


def export_provenance(checksum: str) -> dict[str, str]:
    """The Parquet metadata the dbt export writes into each features file."""
    return {"dbt_model": "model.churn_platform.customer_features", DBT_MODEL_CHECKSUM: checksum,
            "feature_set_version": "1"}  # fmt: skip


def write_features(lake_root: Path, day: dt.date, table: pa.Table, checksum: str | None = MODEL_CHECKSUM) -> Path:
    """The day's features file, as the dbt export writes it, made by the model with ``checksum``; with
    ``checksum=None``, a hand-made file without the export's provenance."""
    if checksum is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **export_provenance(checksum)})
    path = OfflineLake(lake_root).features(day)
    write_partition_atomically(table, path)
    return path


def label_table(rows: list[tuple[str, dt.date, dt.datetime, int]]) -> pa.Table:
    """Labels: ``(customer_id, snapshot_date, prediction_time, churned)`` rows."""
    customer, snapshot, time, churned = zip(*rows, strict=True) if rows else ([], [], [], [])
    return pa.table(
        {
            "customer_id": pa.array(list(customer), pa.string()),
            "snapshot_date": pa.array(list(snapshot), pa.date32()),
            "prediction_time": pa.array(list(time), pa.timestamp("us")),
            "churned": pa.array(list(churned), pa.int64()),
        }
    )


def write_labels(lake_root: Path, matured: dt.date, rows: list[tuple[str, dt.date, dt.datetime, int]]) -> Path:
    path = partition_path(lake_root, FEATURES_LAYER, CHURN_LABELS, matured)
    write_partition_atomically(label_table(rows), path)
    return path


def end_of(day: dt.date) -> dt.datetime:
    """The moment a day's snapshot completes (and the dbt labels' prediction time): the next midnight."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
