"""The data lake's layout and its one write primitive: the only module that knows where a table lives.

Layout, under the lake root (``settings.lake_root``)::

    raw/<table>/date=YYYY-MM-DD/part-0.parquet             the validated raw rows of a day
    quarantine/<table>/date=YYYY-MM-DD/part-<write>.parquet  the rows set aside, with their reasons: the file the
                                                           raw partition names (``write_raw_day``)
    features/<model>/date=YYYY-MM-DD/part-0.parquet        the dbt feature and label exports
    offline_store/feature_snapshots                        Delta, by snapshot_date (spark_jobs)
    offline_store/training_set                             Delta, one version per build (spark_jobs)
    offline_store/_protected_versions.json                 the versions registered models still reference
    scoring/batch_scores                                   Delta, by snapshot_date (delta-rs)
    scoring/top_risk/date=YYYY-MM-DD/top_risk.csv          the day's list for the retention team
    monitoring/drift_reports/date=YYYY-MM-DD/report.html   the day's Evidently report
    monitoring/model_performance/date=YYYY-MM-DD/part-0.parquet
    monitoring/online_predictions/date=YYYY-MM-DD/part-0.parquet  the day's judgement of the online predictions
    monitoring/online_drift_reports/date=YYYY-MM-DD/report.html   the Evidently report of a day's online traffic
    serving/prediction_log/date=YYYY-MM-DD/part-<flush>.parquet  the prediction service's log, by feature day

Parquet partitions are one file per day, replaced with an atomic rename, so a reader (or a crash) sees either the
old partition or the new one, never half of either. A raw day and its quarantine are one commit: the raw file is
written last and names the quarantine file written with it. dbt reads the same layout (``dbt_project/macros/lake.sql``).
The names inside ``offline_store/`` belong to ``spark_jobs.paths``: the Spark jobs are handed that folder.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dagster_project import faults
from spark_jobs.paths import OfflineStorePaths

# Layers: the first folder below the lake root.
RAW = "raw"
QUARANTINE = "quarantine"
FEATURES = "features"
OFFLINE_STORE = "offline_store"
SCORING = "scoring"
MONITORING = "monitoring"
SERVING = "serving"

PARTITION_FILE = "part-0.parquet"
# In a raw partition's Parquet metadata: the file name of the quarantine written with it.
QUARANTINE_FILE_KEY = b"platform.quarantine_file"

# Tables that are not named by the data (raw tables and dbt models are) nor by the offline store's jobs.
BATCH_SCORES_TABLE = "batch_scores"
TOP_RISK_TABLE = "top_risk"
TOP_RISK_FILE = "top_risk.csv"
DRIFT_REPORTS_TABLE = "drift_reports"
DRIFT_REPORT_FILE = "report.html"
MODEL_PERFORMANCE_TABLE = "model_performance"
PREDICTION_LOG_TABLE = "prediction_log"
ONLINE_PREDICTIONS_TABLE = "online_predictions"
ONLINE_DRIFT_REPORTS_TABLE = "online_drift_reports"


def table_dir(root: str | Path, layer: str, table: str) -> Path:
    return Path(root) / layer / table


def partition_dir(root: str | Path, layer: str, table: str, date: dt.date) -> Path:
    return table_dir(root, layer, table) / f"date={date.isoformat()}"


def partition_path(root: str | Path, layer: str, table: str, date: dt.date) -> Path:
    return partition_dir(root, layer, table, date) / PARTITION_FILE


def offline_store(root: str | Path) -> OfflineStorePaths:
    """The offline store's tables (Delta feature snapshots, training sets, the protected-versions file): what every
    caller of ``spark_jobs`` is handed."""
    return OfflineStorePaths(store_root=Path(root) / OFFLINE_STORE)


def batch_scores_path(root: str | Path) -> Path:
    """The Delta table of nightly scores."""
    return table_dir(root, SCORING, BATCH_SCORES_TABLE)


def top_risk_path(root: str | Path, date: dt.date) -> Path:
    return partition_dir(root, SCORING, TOP_RISK_TABLE, date) / TOP_RISK_FILE


def drift_report_path(root: str | Path, date: dt.date) -> Path:
    return partition_dir(root, MONITORING, DRIFT_REPORTS_TABLE, date) / DRIFT_REPORT_FILE


def online_predictions_path(root: str | Path, date: dt.date) -> Path:
    return partition_path(root, MONITORING, ONLINE_PREDICTIONS_TABLE, date)


def online_drift_report_path(root: str | Path, date: dt.date) -> Path:
    return partition_dir(root, MONITORING, ONLINE_DRIFT_REPORTS_TABLE, date) / DRIFT_REPORT_FILE


def prediction_log_dir(root: str | Path, date: dt.date) -> Path:
    """The prediction service's log of the predictions made on ``date``'s features: one Parquet file per flush."""
    return partition_dir(root, SERVING, PREDICTION_LOG_TABLE, date)


def model_performance_path(root: str | Path, date: dt.date) -> Path:
    return partition_path(root, MONITORING, MODEL_PERFORMANCE_TABLE, date)


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write`` on a temporary file in ``path``'s folder, then rename it into place.

    The rename is atomic on POSIX within one file system: readers, and a run killed at any point, see the old file
    or the new one. The temporary file is removed when ``write`` fails.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_partition_atomically(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` as Parquet, timestamps in microseconds (what Spark reads), atomically."""
    return write_atomically(
        path, lambda tmp: pq.write_table(table, tmp, coerce_timestamps="us", allow_truncated_timestamps=False)
    )


def write_raw_day(
    root: str | Path, table: str, date: dt.date, kept: pa.Table, quarantined: pa.Table
) -> tuple[Path, Path]:
    """Write a raw day and its quarantine as one commit; returns (raw path, quarantine path).

    Two files cannot be renamed into place at once, so the quarantine goes first, to a file of its own write, and
    the raw partition goes last, naming that file in its metadata: the raw file's rename is the commit. A process
    killed in between leaves the old raw file, which still names the old quarantine: readers of the pair
    (``read_quarantine``) never count a row both kept and quarantined. Quarantine files that no raw file names
    are removed once the commit is done, or by the next write.
    """
    folder = partition_dir(root, QUARANTINE, table, date)
    quarantine_path = folder / f"part-{uuid.uuid4().hex}.parquet"
    write_partition_atomically(quarantined, quarantine_path)
    faults.write_point(faults.QUARANTINE)
    metadata = {**(kept.schema.metadata or {}), QUARANTINE_FILE_KEY: quarantine_path.name.encode()}
    raw_path = write_partition_atomically(
        kept.replace_schema_metadata(metadata), partition_path(root, RAW, table, date)
    )
    faults.write_point(faults.RAW)
    for stale in folder.glob("part-*.parquet"):
        if stale != quarantine_path:
            stale.unlink(missing_ok=True)
    return raw_path, quarantine_path


def committed_quarantine_path(root: str | Path, table: str, date: dt.date) -> Path | None:
    """The quarantine file that goes with the day's raw partition; None if the day has no raw partition."""
    raw = partition_path(root, RAW, table, date)
    if not raw.exists():
        return None
    named = (pq.read_schema(raw).metadata or {}).get(QUARANTINE_FILE_KEY)
    # A raw partition written before quarantines were named pairs with the one file of the old layout.
    return partition_dir(root, QUARANTINE, table, date) / (named.decode() if named else PARTITION_FILE)


def read_quarantine(root: str | Path, table: str, date: dt.date) -> pa.Table | None:
    """The rows quarantined with the day's committed raw partition (None if the day has none)."""
    path = committed_quarantine_path(root, table, date)
    return pq.read_table(path) if path is not None and path.exists() else None
