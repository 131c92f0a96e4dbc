"""Where the offline store's inputs and tables live, all derived from the settings' lake root."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from dagster_project import lake
from dagster_project.settings import get_settings

FEATURES_LAYER = "features"  # written by the dbt exports
CUSTOMER_FEATURES = "customer_features"
CHURN_LABELS = "churn_labels"
OFFLINE_STORE_LAYER = "offline_store"
FEATURE_SNAPSHOTS = "feature_snapshots"
TRAINING_SET = "training_set"
# Versions that models still reference; written by the ML side, read by maintenance (see spark_jobs.maintenance).
PROTECTED_VERSIONS_FILE = "_protected_versions.json"


@dataclass(frozen=True)
class OfflineStorePaths:
    lake_root: Path

    @classmethod
    def from_settings(cls) -> OfflineStorePaths:
        return cls(lake_root=Path(get_settings().lake_root))  # type: ignore[arg-type]

    def customer_features(self, date: dt.date) -> Path:
        return lake.partition_path(self.lake_root, FEATURES_LAYER, CUSTOMER_FEATURES, date)

    @property
    def churn_labels(self) -> Path:
        """The folder of the daily label partitions (``date=YYYY-MM-DD/part-0.parquet``)."""
        return self.lake_root / FEATURES_LAYER / CHURN_LABELS

    @property
    def store(self) -> Path:
        return self.lake_root / OFFLINE_STORE_LAYER

    @property
    def feature_snapshots(self) -> Path:
        return self.store / FEATURE_SNAPSHOTS

    @property
    def training_set(self) -> Path:
        return self.store / TRAINING_SET

    @property
    def protected_versions_file(self) -> Path:
        return self.store / PROTECTED_VERSIONS_FILE
