"""The data lake's layout and its one write primitive.

Layout: ``<lake_root>/<layer>/<table>/date=YYYY-MM-DD/part-0.parquet``. One file per partition, replaced with an
atomic rename, so a reader (or a crash) sees either the old partition or the new one, never half of either.
The offline store's Delta tables live in their own layer, ``<lake_root>/offline_store``; their names inside it
belong to ``spark_jobs.paths``, which is handed the layer's folder.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from spark_jobs.paths import OfflineStorePaths

PARTITION_FILE = "part-0.parquet"
OFFLINE_STORE_LAYER = "offline_store"


def table_dir(root: Path, layer: str, table: str) -> Path:
    """The folder of a table's daily partitions."""
    return root / layer / table


def partition_dir(root: Path, layer: str, table: str, date: dt.date) -> Path:
    return table_dir(root, layer, table) / f"date={date.isoformat()}"


def partition_path(root: Path, layer: str, table: str, date: dt.date) -> Path:
    return partition_dir(root, layer, table, date) / PARTITION_FILE


def table_glob(root: Path, layer: str, table: str) -> str:
    """A glob over every partition of a table, as DuckDB and dbt read it."""
    return str(table_dir(root, layer, table) / "*" / "*.parquet")


def offline_store(root: Path) -> OfflineStorePaths:
    """The offline store's tables in the lake under ``root`` (what every caller of ``spark_jobs`` is handed)."""
    return OfflineStorePaths(store_root=Path(root) / OFFLINE_STORE_LAYER)


def write_partition_atomically(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` through a temporary file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, coerce_timestamps="us", allow_truncated_timestamps=False)
        os.replace(tmp, path)  # atomic on POSIX within one filesystem
    finally:
        tmp.unlink(missing_ok=True)
