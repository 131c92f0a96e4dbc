"""One day of the problem's feature model into the Delta table ``feature_snapshots``, idempotently.

The table is keyed by the contract's entity column(s) and partitioned by its day column (``contract.as_of``); a
day is written with ``replaceWhere <day column> = <day>``, so a
rerun (or a backfill) replaces exactly that day and no other, in one atomic commit that readers see whole or not
at all. Every commit carries JSON user metadata: the Dagster run, the source file, the dbt provenance the export
wrote into that file (among it ``dbt_model_checksum``, the lineage of the features, read from the file and never
guessed: null when the file carries none) and the row count.

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
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs import tables
from spark_jobs.contract import DBT_MODEL_CHECKSUM, Contract
from spark_jobs.paths import OfflineStorePaths
from spark_jobs.session import add_session_arguments, session_from_arguments

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
    seconds: float
    columns: list[tuple[str, str]] = field(default_factory=list)  # (name, Spark type) of the table after the write


def read_features(spark: SparkSession, source: str | Path, contract: Contract) -> DataFrame:
    """The day's export of the feature model, its day column typed as a date."""
    if isinstance(source, Path) and not source.exists():
        raise FileNotFoundError(f"no {contract.features_model} file at {source}")
    frame = spark.read.parquet(str(source))
    keys = contract.snapshot_keys
    missing = [c for c in keys if c not in frame.columns]
    if missing:
        raise InvalidSnapshotError(f"{source} lacks the key columns {missing}")
    if not feature_columns(frame.schema, keys):
        raise InvalidSnapshotError(f"{source} holds no feature column besides {list(keys)}")
    return frame.withColumn(contract.as_of, F.col(contract.as_of).cast("date"))


def source_provenance(source: Path) -> dict[str, str]:
    """What the dbt export wrote into the file's Parquet metadata (model, ``DBT_MODEL_CHECKSUM``, feature set
    version); {} for a file it did not write."""
    import pyarrow.parquet as pq

    raw = pq.read_schema(source).metadata or {}
    decoded = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
    return {k: v for k, v in decoded.items() if k.startswith("dbt_") or k == "feature_set_version"}


def validate_day(frame: DataFrame, snapshot_date: dt.date, contract: Contract) -> int:
    """Check that the frame is one snapshot of ``snapshot_date``: one row per entity. Returns the row count."""
    entity, day = [F.col(c) for c in contract.entity], F.col(contract.as_of)
    no_id = F.greatest(*[c.isNull() for c in entity]) if len(entity) > 1 else entity[0].isNull()
    row = frame.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct(*entity).alias("entities"),
        F.sum(no_id.cast("int")).alias("null_ids"),
        F.sum((day.isNull() | (day != F.lit(snapshot_date))).cast("int")).alias("other_days"),
    ).first()
    assert row is not None
    rows, problems = int(row["rows"]), []
    if rows == 0:
        raise InvalidSnapshotError(f"the snapshot of {snapshot_date} is empty: refusing to erase the day")
    if row["null_ids"]:
        problems.append(f"{row['null_ids']} rows without {'/'.join(contract.entity)}")
    if rows and row["other_days"]:
        problems.append(f"{row['other_days']} rows whose {contract.as_of} is not {snapshot_date}")
    if rows - int(row["null_ids"] or 0) != int(row["entities"]):
        problems.append(f"{rows} rows for {row['entities']} entities: an entity appears twice")
    if problems:
        raise InvalidSnapshotError(f"snapshot of {snapshot_date}: " + "; ".join(problems))
    return rows


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
            hint = (
                "To add these columns, rerun with evolve_schema=True (CLI --evolve-schema); earlier days will "
                "read them as null."
                if diff.additive
                else "Removing or retyping a feature is a breaking change: write a new versioned table "
                "(e.g. feature_snapshots_v2) and backfill it, so that old versions stay reproducible."
            )
            raise SchemaChangeError(
                f"{contract.features_model} of {snapshot_date} differ from {table_path}: {diff.describe()}. {hint}"
            )
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
    source: Path,
    store: OfflineStorePaths,
    contract: Contract,
    dagster_run_id: str | None = None,
    evolve_schema: bool = False,
) -> SnapshotWrite:
    """The whole job for one day: read ``source``, the dbt export of ``snapshot_date`` (one Parquet file), and
    write it into the store's ``feature_snapshots`` table, with the lineage the file itself carries."""
    frame = read_features(spark, source, contract)
    return write_feature_snapshot(
        spark,
        frame,
        store.feature_snapshots,
        snapshot_date,
        contract,
        dagster_run_id=dagster_run_id,
        evolve_schema=evolve_schema,
        source=str(source),
        source_metadata=source_provenance(source),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spark_jobs.feature_snapshots", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--contract", type=Path, required=True, help="the problem's contract, as JSON")
    parser.add_argument("--store-root", type=Path, required=True, help="the offline store's folder")
    parser.add_argument("--date", type=dt.date.fromisoformat, action="append", required=True, help="YYYY-MM-DD; repeat")
    parser.add_argument(
        "--source", type=Path, action="append", required=True, help="the day's feature file, one per --date"
    )
    parser.add_argument("--run-id", default=None, help="recorded in the commit metadata")
    parser.add_argument("--evolve-schema", action="store_true", help="accept new feature columns (additive only)")
    add_session_arguments(parser)
    args = parser.parse_args(argv)
    if len(args.date) != len(args.source) or len(set(args.date)) != len(args.date):
        parser.error(f"give each --date once, with its own --source ({len(args.date)} dates, {len(args.source)} files)")
    contract = Contract.from_file(args.contract)
    store = OfflineStorePaths(store_root=args.store_root)
    spark = session_from_arguments(args)
    for day, source in sorted(zip(args.date, args.source, strict=True)):
        done = snapshot_day(spark, day, source, store, contract, args.run_id, args.evolve_schema)
        print(f"{day}: {done.rows} rows -> {done.table_path} v{done.version} ({done.seconds}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
