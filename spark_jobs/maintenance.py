"""OPTIMIZE and VACUUM of the offline store, never breaking time travel to a version a model still references.

Protected versions
------------------
A version is protected when any of these names it:

1. the file ``<store_root>/_protected_versions.json``, which the ML side writes when it registers or
   promotes a model: ``{"feature_snapshots": [3, 7], "training_set": [12]}`` (the versions its models were
   trained on; either key may be absent);
2. the table property ``churn_platform.protected_versions`` of either table, a comma-separated list, set with
   ``ALTER TABLE delta.`<path>` SET TBLPROPERTIES ('churn_platform.protected_versions' = '3,7')``;
3. a protected ``training_set`` version: the ``feature_store_version`` its commit names is protected too, so the
   training set can still be rebuilt from it.

A file that exists but cannot be read stops the maintenance: vacuuming on a guess could delete what a champion
model needs.

Retention
---------
VACUUM deletes a data file only when the current version no longer uses it and it was removed from the table
longer ago than ``delta.deletedFileRetentionDuration``. Every file a version ``v`` reads is either still in use or
was removed by a commit made *after* ``v``. So a retention of at least ``now - commit time of v`` keeps ``v``
readable. Delta 4 adds a second reason: Spark refuses to time travel to any version older than that same
retention, files or not. Each run therefore sets, per table::

    retention = max(min_retention_hours,                 # 168 h (7 days) by default: Delta's own default
                    now - commit time of the oldest protected version + headroom_hours)   # 14 days default

as ``delta.deletedFileRetentionDuration`` (Delta 4 ignores VACUUM's ``RETAIN`` argument unless it is 0). The
headroom is how long the protected versions stay within the retention after this run: two weekly runs, so a
missed run breaks nothing. ``delta.logRetentionDuration`` is raised to at least ``retention + 30 days``, so log
cleanup at checkpoints never removes the commits that time travel to a protected version needs; a longer log
retention set by hand is never lowered. Versions that nothing protects are kept for ``min_retention_hours`` only,
and Spark cannot time travel to them after that (delta-rs still can while their files exist).

Run alone: ``python -m spark_jobs.maintenance --store-root DIR [--min-retention-hours 168] [--dry-run]
--master 'local[*]' --driver-memory 2g --jars-cache DIR``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pyspark.sql import SparkSession

from spark_jobs import tables
from spark_jobs.object_store import Location, ObjectStore, exists, location_argument, read_text
from spark_jobs.paths import FEATURE_SNAPSHOTS, TRAINING_SET, OfflineStorePaths
from spark_jobs.session import add_session_arguments, object_store_from_arguments, session_from_arguments

JOB = "maintenance"
PROTECTED_PROPERTY = "churn_platform.protected_versions"
TOMBSTONE_RETENTION = "delta.deletedFileRetentionDuration"
ENFORCE_TIME_TRAVEL_RETENTION = "spark.databricks.delta.vacuum.enforceTimeTravelWithinDeletedFileRetentionDuration"
LOG_RETENTION = "delta.logRetentionDuration"
DEFAULT_MIN_RETENTION_HOURS = 168.0  # 7 days
# Until the next run (weekly, twice over so that one missed run breaks nothing), plus clock skew between writers.
DEFAULT_HEADROOM_HOURS = 14 * 24.0
LOG_RETENTION_HEADROOM_HOURS = 30 * 24.0  # covers the weeks between runs, and then some
DEFAULT_LOG_RETENTION_HOURS = 30 * 24.0  # Delta's default
_UNIT_HOURS = {"second": 1 / 3600, "minute": 1 / 60, "hour": 1.0, "day": 24.0, "week": 168.0}


def parse_interval_hours(value: str | None) -> float | None:
    """``'interval 30 days'`` -> 720.0; None when absent or not understood."""
    match = re.fullmatch(r"\s*(?:interval\s+)?(\d+(?:\.\d+)?)\s+(second|minute|hour|day|week)s?\s*", value or "", re.I)
    return float(match.group(1)) * _UNIT_HOURS[match.group(2).lower()] if match else None


def _interval(hours: float) -> str:
    return f"interval {math.ceil(hours * 3600)} seconds"


def _versions(value: Any, where: str) -> set[int]:
    if value is None:
        return set()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple | set):
        raise ValueError(f"{where}: expected a list of versions, got {value!r}")
    try:
        return {int(str(v).strip()) for v in items if str(v).strip()}
    except ValueError as error:
        raise ValueError(f"{where}: not a list of integer versions: {value!r}") from error


def protected_versions_from_file(path: Location, object_store: ObjectStore | None = None) -> dict[str, set[int]]:
    """The versions the ML side protects, from ``_protected_versions.json`` (empty if there is no file)."""
    if not exists(path, object_store):
        return {}
    try:
        content = json.loads(read_text(path, object_store))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): refusing to vacuum on a guess") from error
    if not isinstance(content, dict):
        raise ValueError(f"{path} must hold an object like {{'training_set': [12]}}, not {type(content).__name__}")
    return {table: _versions(content.get(table), f"{path}[{table}]") for table in (FEATURE_SNAPSHOTS, TRAINING_SET)}


def protected_versions(
    spark: SparkSession, store: OfflineStorePaths, object_store: ObjectStore | None = None
) -> dict[str, set[int]]:
    """Every protected version of both tables: the file, the table properties and the training sets' inputs."""
    from_file = protected_versions_from_file(store.protected_versions_file, object_store)
    found: dict[str, set[int]] = {}
    for name, path in ((FEATURE_SNAPSHOTS, store.feature_snapshots), (TRAINING_SET, store.training_set)):
        versions = set(from_file.get(name, set()))
        if tables.is_delta_table(spark, path):
            prop = tables.properties(spark, path).get(PROTECTED_PROPERTY)
            versions |= _versions(prop, f"{path} property {PROTECTED_PROPERTY}")
        found[name] = versions
    if found[TRAINING_SET] and tables.is_delta_table(spark, store.training_set):
        commits = {c.version: c for c in tables.history(spark, store.training_set)}
        for version in found[TRAINING_SET]:
            source = commits[version].user_metadata.get("feature_store_version") if version in commits else None
            if source is not None:
                found[FEATURE_SNAPSHOTS].add(int(source))
    return found


def retention_hours(
    oldest_protected_commit: dt.datetime | None,
    now: dt.datetime,
    min_retention_hours: float = DEFAULT_MIN_RETENTION_HOURS,
    headroom_hours: float = DEFAULT_HEADROOM_HOURS,
) -> float:
    """How long removed files must be kept so that the oldest protected version stays readable."""
    if oldest_protected_commit is None:
        return min_retention_hours
    age = (now - oldest_protected_commit).total_seconds() / 3600
    return max(min_retention_hours, age + headroom_hours)


def _missing_files(spark: SparkSession, path: str | Path, version: int) -> list[str]:
    """Data files of ``version`` that are gone from a local file system (reading it would fail)."""
    # About files, not policy: look even where Delta would refuse time travel past the retention.
    with tables.session_conf(spark, {ENFORCE_TIME_TRAVEL_RETENTION: "false"}):
        files = spark.read.format("delta").option("versionAsOf", version).load(str(path)).inputFiles()
    local = [urlparse(f) for f in files]
    return [
        f for f, u in zip(files, local, strict=True) if u.scheme in ("", "file") and not Path(unquote(u.path)).exists()
    ]


@dataclass
class TableMaintenance:
    """What maintenance did to one table."""

    table: str
    path: str
    latest_version: int | None = None
    protected_versions: list[int] = field(default_factory=list)
    unknown_protected_versions: list[int] = field(default_factory=list)  # named but absent from the history
    oldest_protected_commit: str | None = None
    retention_hours: float | None = None
    properties_set: dict[str, str] = field(default_factory=dict)
    files_compacted: int = 0
    files_written_by_optimize: int = 0
    files_vacuumed: int = 0
    unreadable_protected_versions: dict[int, int] = field(default_factory=dict)  # version -> missing files
    seconds: float = 0.0

    @property
    def protected_readable(self) -> bool:
        return not self.unreadable_protected_versions and not self.unknown_protected_versions

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "protected_readable": self.protected_readable}


def maintain_table(
    spark: SparkSession,
    name: str,
    path: str | Path,
    protected: set[int],
    min_retention_hours: float = DEFAULT_MIN_RETENTION_HOURS,
    headroom_hours: float = DEFAULT_HEADROOM_HOURS,
    optimize: bool = True,
    vacuum: bool = True,
    dagster_run_id: str | None = None,
    now: dt.datetime | None = None,
    dry_run: bool = False,
) -> TableMaintenance:
    """Set the retention the protected versions need, compact small files, vacuum, then check the protected.

    ``dry_run`` only works out and reports the retention (and what VACUUM would delete today under the retention
    in force): no change at all.
    """
    started = time.monotonic()
    report = TableMaintenance(table=name, path=str(path))
    if not tables.is_delta_table(spark, path):
        return report
    commits = {c.version: c for c in tables.history(spark, path)}
    report.latest_version = max(commits)
    report.protected_versions = sorted(v for v in protected if v in commits)
    report.unknown_protected_versions = sorted(v for v in protected if v not in commits)
    oldest = commits[report.protected_versions[0]].timestamp if report.protected_versions else None
    report.oldest_protected_commit = oldest.isoformat() if oldest else None
    metadata = {"job": JOB, "dagster_run_id": dagster_run_id, "protected_versions": report.protected_versions}
    if optimize and not dry_run:
        # Compaction first: the small files it replaces become tombstones that the retention below covers.
        with tables.commit_user_metadata(spark, metadata):
            row = spark.sql(f"OPTIMIZE {tables.sql_path(path)}").first()
        if row is not None and row["metrics"] is not None:
            report.files_compacted = int(row["metrics"]["numFilesRemoved"])
            report.files_written_by_optimize = int(row["metrics"]["numFilesAdded"])

    # Worked out right before VACUUM reads its own clock; the headroom covers the seconds in between.
    hours = retention_hours(oldest, now or dt.datetime.now(dt.UTC), min_retention_hours, headroom_hours)
    report.retention_hours = metadata["retention_hours"] = round(hours, 6)
    current = tables.properties(spark, path)
    wanted = {TOMBSTONE_RETENTION: _interval(hours)}
    log_hours = parse_interval_hours(current.get(LOG_RETENTION)) or DEFAULT_LOG_RETENTION_HOURS
    if log_hours < hours + LOG_RETENTION_HEADROOM_HOURS:
        wanted[LOG_RETENTION] = _interval(hours + LOG_RETENTION_HEADROOM_HOURS)
    changes = {k: v for k, v in wanted.items() if current.get(k) != v}
    if dry_run:  # what VACUUM would delete today, under the retention in force
        report.files_vacuumed = spark.sql(f"VACUUM {tables.sql_path(path)} DRY RUN").count()
    else:
        if changes:
            tables.set_properties(spark, path, changes, metadata)
            report.properties_set = changes
        if vacuum:
            with tables.commit_user_metadata(spark, metadata):
                spark.sql(f"VACUUM {tables.sql_path(path)}").collect()
            end = tables.history(spark, path, limit=1)[0]  # VACUUM END carries what was deleted
            report.files_vacuumed = int(end.operation_metrics.get("numDeletedFiles", 0))
    for version in report.protected_versions:
        missing = _missing_files(spark, path, version)
        if missing:
            report.unreadable_protected_versions[version] = len(missing)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def run(
    spark: SparkSession,
    store: OfflineStorePaths,
    min_retention_hours: float = DEFAULT_MIN_RETENTION_HOURS,
    headroom_hours: float = DEFAULT_HEADROOM_HOURS,
    optimize: bool = True,
    vacuum: bool = True,
    dagster_run_id: str | None = None,
    dry_run: bool = False,
    object_store: ObjectStore | None = None,
) -> list[TableMaintenance]:
    """Maintain both tables of the offline store."""
    protected = protected_versions(spark, store, object_store)
    return [
        maintain_table(
            spark,
            name,
            path,
            protected[name],
            min_retention_hours,
            headroom_hours,
            optimize,
            vacuum,
            dagster_run_id,
            dry_run=dry_run,
        )
        for name, path in ((FEATURE_SNAPSHOTS, store.feature_snapshots), (TRAINING_SET, store.training_set))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.maintenance", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store-root", type=location_argument, required=True, help="the offline store's folder (or s3:// prefix)"
    )
    parser.add_argument("--min-retention-hours", type=float, default=DEFAULT_MIN_RETENTION_HOURS)
    parser.add_argument("--headroom-hours", type=float, default=DEFAULT_HEADROOM_HOURS)
    parser.add_argument("--no-optimize", action="store_true")
    parser.add_argument(
        "--dry-run", action="store_true", help="report protected versions and retention; change nothing"
    )
    parser.add_argument("--run-id", default=None)
    add_session_arguments(parser)
    args = parser.parse_args(argv)
    store = OfflineStorePaths(store_root=args.store_root)
    object_store = object_store_from_arguments(args, args.store_root)
    reports = run(session_from_arguments(args, object_store), store, args.min_retention_hours, args.headroom_hours,
                  not args.no_optimize, True, args.run_id, dry_run=args.dry_run, object_store=object_store)  # fmt: skip
    print(json.dumps([r.as_dict() for r in reports], indent=2, default=str))
    return 0 if all(r.protected_readable for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
