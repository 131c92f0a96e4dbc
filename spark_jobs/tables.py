"""Small helpers over Delta tables addressed by path, written in Delta SQL so they also work over Spark Connect."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


def sql_path(path: str | Path) -> str:
    """``delta.`<path>``` with the path quoted for Spark SQL."""
    return "delta.`" + str(path).replace("`", "``") + "`"


@dataclass(frozen=True)
class Commit:
    version: int
    timestamp: dt.datetime  # UTC
    operation: str
    user_metadata: dict[str, Any]
    operation_metrics: dict[str, str]


def _parse_user_metadata(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        return {"userMetadata": raw}
    return parsed if isinstance(parsed, dict) else {"userMetadata": parsed}


def is_delta_table(spark: SparkSession, path: str | Path) -> bool:
    if isinstance(path, Path) and not (path / "_delta_log").is_dir():
        return False  # a local path: no need to ask Spark (and no error logged for a missing table)
    try:
        spark.sql(f"DESCRIBE HISTORY {sql_path(path)} LIMIT 1").collect()
        return True
    except AnalysisException:
        return False


def warm_up(spark: SparkSession, paths: list[str | Path]) -> None:
    """Read the history and a row of each table that exists: what a JVM's first job over a table pays for once
    (Delta's and Parquet's classes loaded and compiled, the table's log replayed and cached)."""
    for path in paths:
        if is_delta_table(spark, path):
            spark.read.format("delta").load(str(path)).limit(1).collect()


def history(spark: SparkSession, path: str | Path, limit: int | None = None) -> list[Commit]:
    """The table's commits, newest first."""
    query = f"DESCRIBE HISTORY {sql_path(path)}" + (f" LIMIT {int(limit)}" if limit else "")
    rows = (
        spark.sql(query)
        # Epoch milliseconds: collect() would turn a timestamp into the Python process's local time.
        .selectExpr("version", "unix_millis(timestamp) AS ms", "operation", "userMetadata", "operationMetrics")
        .collect()
    )
    return [
        Commit(
            version=int(r["version"]),
            timestamp=dt.datetime.fromtimestamp(r["ms"] / 1000, tz=dt.UTC),
            operation=r["operation"],
            user_metadata=_parse_user_metadata(r["userMetadata"]),
            operation_metrics=dict(r["operationMetrics"] or {}),
        )
        for r in rows
    ]


def latest_version(spark: SparkSession, path: str | Path) -> int:
    return history(spark, path, limit=1)[0].version


def commit(spark: SparkSession, path: str | Path, version: int) -> Commit:
    found = [c for c in history(spark, path) if c.version == version]
    if not found:
        raise ValueError(f"{path} has no version {version} in its history (removed by log retention?)")
    return found[0]


def version_written_by(spark: SparkSession, path: str | Path, write_id: str, search: int = 50) -> int:
    """The version whose commit carries ``write_id`` in its user metadata: exact even with concurrent writers."""
    for c in history(spark, path, limit=search):
        if c.user_metadata.get("write_id") == write_id:
            return c.version
    raise RuntimeError(f"no commit of {path} carries write_id {write_id}: was the write lost?")


def new_write_id() -> str:
    return uuid.uuid4().hex


def properties(spark: SparkSession, path: str | Path) -> dict[str, str]:
    row = spark.sql(f"DESCRIBE DETAIL {sql_path(path)}").select("properties").first()
    return dict(row["properties"] or {}) if row else {}


@contextlib.contextmanager
def commit_user_metadata(spark: SparkSession, metadata: dict[str, Any]) -> Iterator[None]:
    """Attach ``metadata`` (as JSON) to the commits of the SQL commands run inside the block."""
    spark.conf.set(USER_METADATA_CONF, json.dumps(metadata, sort_keys=True, default=str))
    try:
        yield
    finally:
        spark.conf.unset(USER_METADATA_CONF)


@contextlib.contextmanager
def session_conf(spark: SparkSession, conf: dict[str, str]) -> Iterator[None]:
    """Set session settings for the block, then put back what was there."""
    before = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def set_properties(spark: SparkSession, path: str | Path, props: dict[str, str], metadata: dict[str, Any]) -> None:
    assignments = ", ".join(f"'{k}' = '{v}'" for k, v in props.items())
    with commit_user_metadata(spark, metadata):
        spark.sql(f"ALTER TABLE {sql_path(path)} SET TBLPROPERTIES ({assignments})")
