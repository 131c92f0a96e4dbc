"""Days of the problem's feature model into the Delta table ``feature_snapshots``, idempotently.

The table is keyed by the contract's entity column(s) and partitioned by its day column (``contract.as_of``). One
day is written with ``replaceWhere <day column> = <day>`` (``snapshot_day``); several days, a backfill's range,
in ONE commit with ``replaceWhere`` over exactly those days (``snapshot_days``: a range when contiguous, a list
otherwise). Either way a rerun replaces exactly the days given and no other, in one atomic commit that readers see
whole or not at all. Every commit carries JSON user metadata: the Dagster run and, for each day, the source file,
the dbt provenance the export wrote into that file (among it ``dbt_model_checksum``, the lineage of the features,
read from the file and never guessed: null when the file carries none) and the row count (``commit_days`` reads
them from either kind of commit).

Schema: the feature columns are whatever the dbt export holds (never listed here), but they may not drift
silently. A day whose columns or types differ from the table's is refused with a ``SchemaChangeError`` that names
the differences. The one documented evolution is *additive*: new feature columns are accepted when the caller
asks for it (``evolve_schema=True``, ``--evolve-schema``, the asset's ``evolve_schema`` config); earlier days read
them as null. Removing or retyping a column is a breaking change: write a new table (``feature_snapshots_v2``)
and backfill it, so that every version of the old one stays reproducible.

Run alone, naming the contract (``python -m dagster_project.cli contract > contract.json``), each day's file and
the store: ``python -m spark_jobs.feature_snapshots --contract contract.json --store-root DIR --date 2025-03-01
--source FILE [--date ... --source ...] --master 'local[*]' --driver-memory 2g --jars-cache DIR``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import json
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs import tables
from spark_jobs.contract import DBT_MODEL_CHECKSUM, DBT_MODEL_CHECKSUMS, Contract
from spark_jobs.object_store import Location, ObjectStore, exists, location_argument, parquet_schema
from spark_jobs.paths import OfflineStorePaths
from spark_jobs.session import add_session_arguments, object_store_from_arguments, session_from_arguments

JOB = "feature_snapshots"


class SchemaChangeError(ValueError):
    """The day's feature columns differ from the table's, and the change is not an allowed evolution."""


class InvalidSnapshotError(ValueError):
    """The day's file breaks the snapshot contract (wrong day, missing or duplicate entities)."""


@dataclass(frozen=True)
class SchemaDiff:
    added: list[tuple[str, str]] = field(default_factory=list)  # (column, type) in the day, not in the table
    removed: list[tuple[str, str]] = field(default_factory=list)  # in the table, not in the day
    retyped: list[tuple[str, str, str]] = field(default_factory=list)  # (column, table type, day type)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.retyped)

    @property
    def additive(self) -> bool:
        return bool(self.added) and not (self.removed or self.retyped)

    def describe(self) -> str:
        parts = [f"added {', '.join(f'{c} {t}' for c, t in self.added)}"] if self.added else []
        parts += [f"removed {', '.join(f'{c} {t}' for c, t in self.removed)}"] if self.removed else []
        parts += [f"retyped {', '.join(f'{c} {a} -> {b}' for c, a, b in self.retyped)}"] if self.retyped else []
        return "; ".join(parts) or "no change"


def compare_schemas(table: T.StructType, day: T.StructType) -> SchemaDiff:
    """Columns added, removed and retyped from ``table`` to ``day``; nullability is ignored (Parquet loses it)."""
    old = {f.name: f.dataType.simpleString() for f in table.fields}
    new = {f.name: f.dataType.simpleString() for f in day.fields}
    return SchemaDiff(
        added=[(c, t) for c, t in new.items() if c not in old],
        removed=[(c, t) for c, t in old.items() if c not in new],
        retyped=[(c, old[c], t) for c, t in new.items() if c in old and old[c] != t],
    )


def schema_fingerprint(schema: T.StructType) -> str:
    text = ",".join(f"{f.name}:{f.dataType.simpleString()}" for f in schema.fields)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def feature_columns(schema: T.StructType, keys: tuple[str, ...]) -> list[str]:
    """Every column but the keys is stored: the model's features and the descriptive columns beside them, as the
    feature model holds them (training reads the contract's features among them)."""
    return [f.name for f in schema.fields if f.name not in keys]


@dataclass(frozen=True)
class SnapshotWrite:
    """What one day's write did: the version it made and what the person on call wants to know."""

    snapshot_date: dt.date
    table_path: str
    version: int
    rows: int
    feature_columns: list[str]
    schema_change: SchemaDiff
    commit_metadata: dict[str, Any]
    seconds: float  # of the whole commit (shared by the days of a range)
    columns: list[tuple[str, str]] = field(default_factory=list)  # (name, Spark type) of the table after the write

    @property
    def provenance(self) -> dict[str, Any]:
        """This day's source, rows, ``DBT_MODEL_CHECKSUM`` and source metadata, from a one-day or a range commit."""
        return commit_days(self.commit_metadata)[self.snapshot_date.isoformat()]


def commit_days(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The days a ``feature_snapshots`` commit wrote, each with its ``source``, ``rows``, ``DBT_MODEL_CHECKSUM``
    and ``source_metadata``: read from ``days`` in a range commit (``snapshot_days``), from the top level in a
    one-day commit (``write_feature_snapshot``); {} for a commit that wrote no day (OPTIMIZE, a property)."""
    if isinstance(metadata.get("days"), dict):
        return metadata["days"]
    if not metadata.get("snapshot_date"):
        return {}
    return {
        metadata["snapshot_date"]: {
            "source": metadata.get("source"),
            "rows": metadata.get("rows"),
            DBT_MODEL_CHECKSUM: metadata.get(DBT_MODEL_CHECKSUM) or None,
            "source_metadata": metadata.get("source_metadata") or {},
        }
    }


def read_features(
    spark: SparkSession, source: Location, contract: Contract, object_store: ObjectStore | None = None
) -> DataFrame:
    """The day's export of the feature model, its day column typed as a date."""
    if not exists(source, object_store):
        raise FileNotFoundError(f"no {contract.features_model} file at {source}")
    frame = spark.read.parquet(str(source))
    keys = contract.snapshot_keys
    missing = [c for c in keys if c not in frame.columns]
    if missing:
        raise InvalidSnapshotError(f"{source} lacks the key columns {missing}")
    if not feature_columns(frame.schema, keys):
        raise InvalidSnapshotError(f"{source} holds no feature column besides {list(keys)}")
    return frame.withColumn(contract.as_of, F.col(contract.as_of).cast("date"))


def _provenance(schema_metadata: dict[bytes, bytes] | None) -> dict[str, str]:
    decoded = {k.decode(): v.decode(errors="replace") for k, v in (schema_metadata or {}).items()}
    return {k: v for k, v in decoded.items() if k.startswith("dbt_") or k == "feature_set_version"}


def source_provenance(source: Location, object_store: ObjectStore | None = None) -> dict[str, str]:
    """What the dbt export wrote into the file's Parquet metadata (model, ``DBT_MODEL_CHECKSUM``, feature set
    version); {} for a file it did not write."""
    return _provenance(parquet_schema(source, object_store).metadata)


def _snapshot_checks(contract: Contract, expected_day: Column) -> list[Column]:
    """The aggregates that tell whether rows are one snapshot of ``expected_day``: one row per entity."""
    entity, day = [F.col(c) for c in contract.entity], F.col(contract.as_of)
    no_id = F.greatest(*[c.isNull() for c in entity]) if len(entity) > 1 else entity[0].isNull()
    return [
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct(*entity).alias("entities"),
        F.sum(no_id.cast("int")).alias("null_ids"),
        F.sum((day.isNull() | (day != expected_day)).cast("int")).alias("other_days"),
    ]


def _snapshot_problems(row: Row | dict[str, Any], snapshot_date: dt.date, contract: Contract) -> list[str]:
    rows, problems = int(row["rows"]), []
    if row["null_ids"]:
        problems.append(f"{row['null_ids']} rows without {'/'.join(contract.entity)}")
    if rows and row["other_days"]:
        problems.append(f"{row['other_days']} rows whose {contract.as_of} is not {snapshot_date}")
    if rows - int(row["null_ids"] or 0) != int(row["entities"]):
        problems.append(f"{rows} rows for {row['entities']} entities: an entity appears twice")
    return problems


def validate_day(frame: DataFrame, snapshot_date: dt.date, contract: Contract) -> int:
    """Check that the frame is one snapshot of ``snapshot_date``: one row per entity. Returns the row count."""
    row = frame.agg(*_snapshot_checks(contract, F.lit(snapshot_date))).first()
    assert row is not None
    if int(row["rows"]) == 0:
        raise InvalidSnapshotError(f"the snapshot of {snapshot_date} is empty: refusing to erase the day")
    problems = _snapshot_problems(row, snapshot_date, contract)
    if problems:
        raise InvalidSnapshotError(f"snapshot of {snapshot_date}: " + "; ".join(problems))
    return int(row["rows"])


def schema_change_error(
    contract: Contract, snapshot_date: dt.date, table_path: str | Path, diff: SchemaDiff
) -> SchemaChangeError:
    hint = (
        "To add these columns, rerun with evolve_schema=True (CLI --evolve-schema); earlier days will "
        "read them as null."
        if diff.additive
        else "Removing or retyping a feature is a breaking change: write a new versioned table "
        "(e.g. feature_snapshots_v2) and backfill it, so that old versions stay reproducible."
    )
    return SchemaChangeError(
        f"{contract.features_model} of {snapshot_date} differ from {table_path}: {diff.describe()}. {hint}"
    )


def write_feature_snapshot(
    spark: SparkSession,
    frame: DataFrame,
    table_path: str | Path,
    snapshot_date: dt.date,
    contract: Contract,
    dagster_run_id: str | None = None,
    evolve_schema: bool = False,
    source: str | None = None,
    source_metadata: dict[str, str] | None = None,
) -> SnapshotWrite:
    """Replace the ``snapshot_date`` partition of the Delta table with ``frame``, enforcing the table's schema.

    ``source_metadata`` is the provenance in the source file (``source_provenance``); its ``DBT_MODEL_CHECKSUM``
    is the commit's lineage (null without one).
    """
    started = time.monotonic()
    rows = validate_day(frame, snapshot_date, contract)
    keys, day = contract.snapshot_keys, contract.as_of
    exists = tables.is_delta_table(spark, table_path)
    diff = SchemaDiff()
    if exists:
        table_schema = spark.read.format("delta").load(str(table_path)).schema
        diff = compare_schemas(table_schema, frame.schema)
        if not diff.empty and not (diff.additive and evolve_schema):
            raise schema_change_error(contract, snapshot_date, table_path, diff)
        columns = [f.name for f in table_schema.fields] + [c for c, _ in diff.added]
    else:
        columns = [*keys, *feature_columns(frame.schema, keys)]
    write_id = tables.new_write_id()
    metadata = {
        "job": JOB,
        "write_id": write_id,
        "snapshot_date": snapshot_date.isoformat(),
        "dagster_run_id": dagster_run_id,
        DBT_MODEL_CHECKSUM: (source_metadata or {}).get(DBT_MODEL_CHECKSUM) or None,
        "source": source,
        "source_metadata": source_metadata or {},
        "rows": rows,
        "schema_fingerprint": schema_fingerprint(frame.select(*columns).schema),
        "schema_change": diff.describe() if not diff.empty else None,
    }
    writer = (
        frame.select(*columns)
        .write.format("delta")
        .mode("overwrite")
        .partitionBy(day)
        # Delta checks that every written row satisfies the predicate, so a stray day can never slip in.
        .option("replaceWhere", f"`{day}` = DATE'{snapshot_date.isoformat()}'")
        .option("userMetadata", json.dumps(metadata, sort_keys=True))
    )
    if diff.added:
        writer = writer.option("mergeSchema", "true")
    writer.save(str(table_path))
    version = tables.version_written_by(spark, table_path, write_id)
    written = frame.select(*columns).schema
    return SnapshotWrite(
        snapshot_date=snapshot_date,
        table_path=str(table_path),
        version=version,
        rows=rows,
        feature_columns=[c for c in columns if c not in keys],
        schema_change=diff,
        commit_metadata=metadata,
        seconds=round(time.monotonic() - started, 3),
        columns=[(f.name, f.dataType.simpleString()) for f in written.fields],
    )


def snapshot_day(
    spark: SparkSession,
    snapshot_date: dt.date,
    source: Location,
    store: OfflineStorePaths,
    contract: Contract,
    dagster_run_id: str | None = None,
    evolve_schema: bool = False,
    object_store: ObjectStore | None = None,
) -> SnapshotWrite:
    """The whole job for one day: read ``source``, the dbt export of ``snapshot_date`` (one Parquet file), and
    write it into the store's ``feature_snapshots`` table, with the lineage the file itself carries."""
    frame = read_features(spark, source, contract, object_store)
    return write_feature_snapshot(
        spark,
        frame,
        store.feature_snapshots,
        snapshot_date,
        contract,
        dagster_run_id=dagster_run_id,
        evolve_schema=evolve_schema,
        source=str(source),
        source_metadata=source_provenance(source, object_store),
    )


# --- a range of days in one commit -------------------------------------------------------------------------------

# Beside each row read in a range: the file it came from, as Spark names it (never written).
SOURCE_FILE = "_platform_source_file"


def file_key(path: str | Path) -> str:
    """One name for a file whether Spark or the caller gives it: Spark names a file by a URI (``file:/a%20b``,
    ``s3a://bucket/key``), the caller by a path or a URI; both become the path without scheme, percent-decoded."""
    text = str(path)
    parsed = urllib.parse.urlparse(text)
    if len(parsed.scheme) > 1:  # a URI (a one-letter scheme is a Windows drive)
        return urllib.parse.unquote(parsed.netloc + parsed.path)
    return os.path.abspath(text)


@dataclass(frozen=True)
class DayFile:
    """One day's export file and what its footer says, read without Spark."""

    day: dt.date
    source: Location
    signature: str  # its columns and their Arrow types: files alike share one Spark schema
    provenance: dict[str, str]


def read_day_files(
    days_and_sources: Sequence[tuple[dt.date, Location]], contract: Contract, object_store: ObjectStore | None = None
) -> list[DayFile]:
    """The footers of the days' files, oldest day first; every missing file is named with its day."""
    pairs = sorted(((day, location_argument(str(source))) for day, source in days_and_sources), key=lambda p: p[0])
    days = [day for day, _ in pairs]
    if not pairs or len(set(days)) != len(days):
        raise ValueError(f"give each snapshot day once, with its own file: {[str(d) for d in days]}")
    shared = [str(source) for source, count in Counter(file_key(s) for _, s in pairs).items() if count > 1]
    if shared:
        raise ValueError(f"give each snapshot day a file of its own: {', '.join(shared)} is given for several days")
    missing = [f"{day} ({source})" for day, source in pairs if not exists(source, object_store)]
    if missing:
        raise FileNotFoundError(f"no {contract.features_model} file for {', '.join(missing)}")
    files = []
    for day, source in pairs:
        schema = parquet_schema(source, object_store)
        signature = ",".join(f"{f.name}:{f.type}" for f in schema)
        files.append(DayFile(day, source, signature, _provenance(schema.metadata)))
    return files


def days_predicate(day_column: str, days: Sequence[dt.date]) -> str:
    """The ``replaceWhere`` of exactly ``days`` (sorted, distinct): a range when they are contiguous, else a list.
    A range deletes every day inside it, so it is only used when every day inside it is written."""
    column = f"`{day_column}`"
    if len(days) == 1:
        return f"{column} = DATE'{days[0].isoformat()}'"
    if (days[-1] - days[0]).days + 1 == len(days):
        return f"{column} >= DATE'{days[0].isoformat()}' AND {column} <= DATE'{days[-1].isoformat()}'"
    listed = ", ".join(f"DATE'{d.isoformat()}'" for d in days)
    return f"{column} IN ({listed})"


def _schema_as_read(schema: T.StructType, contract: Contract) -> T.StructType:
    """The schema ``read_features`` gives: the day column typed as a date."""
    return T.StructType(
        [T.StructField(f.name, T.DateType(), f.nullable) if f.name == contract.as_of else f for f in schema.fields]
    )


def _range_columns(
    table_schema: T.StructType | None,
    day_schemas: dict[dt.date, T.StructType],
    contract: Contract,
    table_path: str | Path,
    evolve_schema: bool,
) -> tuple[list[str], SchemaDiff]:
    """The columns to write and the change from the table's (or, for a new table, the first day's), judged day by
    day in date order exactly as one write per day would: each day against the table as the earlier days left
    it, with the same ``SchemaChangeError``."""
    keys = contract.snapshot_keys
    current = table_schema
    for day, schema in sorted(day_schemas.items()):
        if current is None:  # a new table: the keys first, as write_feature_snapshot creates it
            current = T.StructType([schema[c] for c in (*keys, *feature_columns(schema, keys))])
            first = current
            continue
        diff = compare_schemas(current, schema)
        if not diff.empty and not (diff.additive and evolve_schema):
            raise schema_change_error(contract, day, table_path, diff)
        current = T.StructType([*current.fields, *(schema[c] for c, _ in diff.added)])
    assert current is not None
    return [f.name for f in current.fields], compare_schemas(table_schema or first, current)


def read_days(
    spark: SparkSession, files: list[DayFile], contract: Contract
) -> tuple[DataFrame, dict[dt.date, T.StructType]]:
    """All the days' files as one frame, each row beside its ``SOURCE_FILE``, and each day's schema as
    ``read_features`` reads it. Files of one layout (usually all) are one scan: a union of one scan per file cost
    a plan and a task per file, 70 s for 120 days of 3,000 rows where the one scan takes a few seconds."""
    as_written: dict[str, T.StructType] = {}
    for f in files:
        if f.signature not in as_written:
            schema = spark.read.parquet(str(f.source)).schema
            missing = [c for c in contract.snapshot_keys if c not in schema.names]
            if missing:
                raise InvalidSnapshotError(f"{f.source} lacks the key columns {missing}")
            if not feature_columns(schema, contract.snapshot_keys):
                raise InvalidSnapshotError(f"{f.source} holds no feature column besides {list(contract.snapshot_keys)}")
            as_written[f.signature] = schema
    parts = [
        spark.read.schema(schema)
        .parquet(*[str(f.source) for f in files if f.signature == signature])
        .withColumn(contract.as_of, F.col(contract.as_of).cast("date"))
        .withColumn(SOURCE_FILE, F.col("_metadata.file_path"))
        for signature, schema in as_written.items()
    ]
    frame = functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
    return frame, {f.day: _schema_as_read(as_written[f.signature], contract) for f in files}


def validate_days(frame: DataFrame, files: list[DayFile], contract: Contract) -> dict[dt.date, int]:
    """``validate_day`` for every day at once, in one aggregate grouped by file and day: every failing day is
    named, with its problems. Returns each day's row count."""
    # The one-day checks, by file and by day: a file's rows of another day (or of none) form groups of their own,
    # told apart below once the group's file is matched to its day.
    checks = _snapshot_checks(contract, F.col(contract.as_of))
    groups = frame.groupBy(SOURCE_FILE, contract.as_of).agg(*checks).collect()
    day_of = {file_key(f.source): f.day for f in files}
    by_day: dict[dt.date, dict[str, int]] = {}
    for group in groups:
        day = day_of.get(file_key(group[SOURCE_FILE]))
        if day is None:
            raise RuntimeError(f"Spark read {group[SOURCE_FILE]}, which is none of the days' files")
        found = by_day.setdefault(day, {"rows": 0, "entities": 0, "null_ids": 0, "other_days": 0})
        found["rows"] += group["rows"]
        found["null_ids"] += group["null_ids"] or 0
        # Exact for a file of its own day's rows; an entity under two days is already refused for the other day.
        found["entities"] += group["entities"]
        if group[contract.as_of] != day:
            found["other_days"] += group["rows"]
    problems = []
    for f in files:
        row = by_day.get(f.day)
        if row is None or row["rows"] == 0:
            problems.append(f"the snapshot of {f.day} is empty ({f.source}): refusing to erase the day")
        elif day_problems := _snapshot_problems(row, f.day, contract):
            problems.append(f"snapshot of {f.day} ({f.source}): " + "; ".join(day_problems))
    if problems:
        raise InvalidSnapshotError("\n".join(problems))
    return {f.day: by_day[f.day]["rows"] for f in files}


def snapshot_days(
    spark: SparkSession,
    days_and_sources: Sequence[tuple[dt.date, Location]],
    store: OfflineStorePaths,
    contract: Contract,
    dagster_run_id: str | None = None,
    evolve_schema: bool = False,
    object_store: ObjectStore | None = None,
) -> list[SnapshotWrite]:
    """The whole job for several days in ONE commit: each ``(day, file)`` is the dbt export of that day, as
    ``snapshot_day`` takes it. Every day is validated (all failing days named) and its schema judged as one write
    per day would judge it; then all are written with one ``replaceWhere`` over exactly those days (a range when
    contiguous, a list otherwise), so a failure leaves the table as it was, and days outside are never touched.

    The commit's metadata carries each day's lineage under ``days`` (``{date: {source, rows,
    DBT_MODEL_CHECKSUM, source_metadata}}``, read by ``commit_days``), the range as ``snapshot_date_first`` and
    ``snapshot_date_last``, the newest day's ``DBT_MODEL_CHECKSUM`` and the distinct ``DBT_MODEL_CHECKSUMS``, oldest
    day first. A range of one day also carries the one-day commit's ``snapshot_date``, ``source`` and
    ``source_metadata``; a longer one does not, so a reader that knows only one-day commits skips it rather than
    crediting every row to one day. Returns one ``SnapshotWrite`` per day, oldest first, all of the same version.

    Why: 31 days of 3,000 customers took about 6 s in one commit against about 60 s in one write per day
    (``bench/snapshot_range.py``, local[2] on two shared cores; the per-day figure varied from 58 to 86 s).
    """
    started = time.monotonic()
    table_path = store.feature_snapshots
    files = read_day_files(days_and_sources, contract, object_store)
    frame, day_schemas = read_days(spark, files, contract)
    rows = validate_days(frame, files, contract)
    table_schema = (
        spark.read.format("delta").load(str(table_path)).schema if tables.is_delta_table(spark, table_path) else None
    )
    columns, diff = _range_columns(table_schema, day_schemas, contract, table_path, evolve_schema)
    days = [f.day for f in files]
    lineage = {
        f.day.isoformat(): {
            "source": str(f.source),
            "rows": rows[f.day],
            DBT_MODEL_CHECKSUM: f.provenance.get(DBT_MODEL_CHECKSUM) or None,
            "source_metadata": f.provenance,
        }
        for f in files
    }
    checksums = [day[DBT_MODEL_CHECKSUM] for day in lineage.values()]
    written = frame.select(*columns)
    write_id = tables.new_write_id()
    metadata: dict[str, Any] = {
        "job": JOB,
        "write_id": write_id,
        "dagster_run_id": dagster_run_id,
        "snapshot_date_first": days[0].isoformat(),
        "snapshot_date_last": days[-1].isoformat(),
        "days": lineage,
        DBT_MODEL_CHECKSUM: checksums[-1],
        DBT_MODEL_CHECKSUMS: list(dict.fromkeys(checksums)),
        "rows": sum(rows.values()),
        "schema_fingerprint": schema_fingerprint(written.schema),
        "schema_change": diff.describe() if not diff.empty else None,
    }
    if len(files) == 1:  # the one-day commit's keys too: its readers read a range of one as they always have
        only = lineage[days[0].isoformat()]
        metadata |= {"snapshot_date": days[0].isoformat(), "source": only["source"],
                     "source_metadata": only["source_metadata"]}  # fmt: skip
    writer = (
        written.write.format("delta")
        .mode("overwrite")
        .partitionBy(contract.as_of)
        # Delta checks that every written row satisfies the predicate, so a stray day can never slip in.
        .option("replaceWhere", days_predicate(contract.as_of, days))
        .option("userMetadata", json.dumps(metadata, sort_keys=True))
    )
    if diff.added:
        writer = writer.option("mergeSchema", "true")
    writer.save(str(table_path))
    version = tables.version_written_by(spark, table_path, write_id)
    seconds = round(time.monotonic() - started, 3)
    return [
        SnapshotWrite(
            snapshot_date=day,
            table_path=str(table_path),
            version=version,
            rows=rows[day],
            feature_columns=[c for c in columns if c not in contract.snapshot_keys],
            schema_change=diff,
            commit_metadata=metadata,
            seconds=seconds,
            columns=[(f.name, f.dataType.simpleString()) for f in written.schema.fields],
        )
        for day in days
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spark_jobs.feature_snapshots", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--contract", type=Path, required=True, help="the problem's contract, as JSON")
    parser.add_argument(
        "--store-root", type=location_argument, required=True, help="the offline store's folder (or s3:// prefix)"
    )
    parser.add_argument("--date", type=dt.date.fromisoformat, action="append", required=True, help="YYYY-MM-DD; repeat")
    parser.add_argument(
        "--source", type=location_argument, action="append", required=True, help="the day's feature file (per --date)"
    )
    parser.add_argument("--run-id", default=None, help="recorded in the commit metadata")
    parser.add_argument("--evolve-schema", action="store_true", help="accept new feature columns (additive only)")
    add_session_arguments(parser)
    args = parser.parse_args(argv)
    if len(args.date) != len(args.source) or len(set(args.date)) != len(args.date):
        parser.error(f"give each --date once, with its own --source ({len(args.date)} dates, {len(args.source)} files)")
    contract = Contract.from_file(args.contract)
    store = OfflineStorePaths(store_root=args.store_root)
    object_store = object_store_from_arguments(args, args.store_root, *args.source)
    spark = session_from_arguments(args, object_store)
    pairs = list(zip(args.date, args.source, strict=True))
    for done in snapshot_days(spark, pairs, store, contract, args.run_id, args.evolve_schema, object_store):
        print(f"{done.snapshot_date}: {done.rows} rows -> {done.table_path} v{done.version} ({done.seconds}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
