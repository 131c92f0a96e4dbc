"""Point-in-time-correct training sets: every label row joined to the features that were known when it was made.

Which snapshot a label may use (the latest one complete at its prediction time), and how the join finds it in
two scans of the history, is ``spark_jobs.point_in_time``. Labels with no usable snapshot are left out of the
table but counted and sampled in the result, the commit metadata and the Dagster asset's metadata, never dropped
silently.

Reproducibility
---------------
Each build overwrites the Delta table ``training_set`` (one new version) and names in its commit the version of
``feature_snapshots`` it read (``feature_store_version``), the exact label partitions with their content hash,
and the lineage of the features: ``dbt_model_checksum``, the checksum of the dbt model behind the newest snapshot
day, and ``dbt_model_checksums``, those behind all the days read (each snapshot commit took its own from the
exported file). While the rows stream into the writer they are counted, hashed (``content_fingerprint``,
independent of row order) and checked for leaks, in the same pass. ``rebuild_training_set`` reads that
feature-store version back through Delta time travel and yields the same rows: the same fingerprint.

The column names are the team's, from the contract (``spark_jobs.contract``): its entity key, prediction time and
label, beside the platform's ``label_snapshot_date`` and ``feature_snapshot_date``.

Run alone, naming the contract, the store and the label folder: ``python -m spark_jobs.training_set --contract FILE
--store-root DIR --labels DIR [--feature-store-version N] [--rebuild N] --master 'local[*]' --driver-memory 2g
--jars-cache DIR``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from spark_jobs import tables
from spark_jobs.contract import DBT_MODEL_CHECKSUM, DBT_MODEL_CHECKSUMS, FEATURE_SNAPSHOT_DATE, Contract
from spark_jobs.feature_snapshots import commit_days
from spark_jobs.object_store import is_uri, location_argument
from spark_jobs.paths import OfflineStorePaths
from spark_jobs.point_in_time import PitJoin, PitStats, point_in_time_join, prepare_labels, snapshot_cutoff
from spark_jobs.session import add_session_arguments, object_store_from_arguments, session_from_arguments

JOB = "training_set"
PARTITION = "date"  # the lake's partition folder of the label files


def _row_hash_sum(columns: list[str]) -> Column:
    # Summed exactly (38 digits hold 10^19 rows of 64-bit hashes): the order of the rows cannot matter.
    return F.sum(F.xxhash64(*[F.col(c) for c in sorted(columns)]).cast("decimal(38,0)"))


def _fingerprint(rows: int, hash_sum: object) -> str:
    return f"{rows}:{hash_sum or 0}"


def content_fingerprint(frame: DataFrame) -> str:
    """An order-independent hash of every row and column: equal fingerprints mean equal tables (to 64-bit hashes)."""
    row = frame.agg(F.count(F.lit(1)).alias("n"), _row_hash_sum(frame.columns).alias("h")).first()
    assert row is not None
    return _fingerprint(row["n"], row["h"])


class LabelsChangedError(RuntimeError):
    """The label partitions a training set was built from no longer hold the same rows."""


# --- reading the inputs ------------------------------------------------------------------------------------------


def read_labels(
    spark: SparkSession, labels_dir: str | Path, first: dt.date | None = None, last: dt.date | None = None
) -> DataFrame:
    """The label partitions under ``labels_dir`` (``date=YYYY-MM-DD/*.parquet``), optionally a range of them."""
    if isinstance(labels_dir, Path) and not any(labels_dir.glob(f"{PARTITION}=*/*.parquet")):
        raise FileNotFoundError(f"no label partitions ({PARTITION}=YYYY-MM-DD/*.parquet) under {labels_dir}")
    frame = spark.read.option("basePath", str(labels_dir)).parquet(str(labels_dir))
    frame = frame.withColumn(PARTITION, F.col(PARTITION).cast("date"))
    if first is not None:
        frame = frame.where(F.col(PARTITION) >= F.lit(first))
    if last is not None:
        frame = frame.where(F.col(PARTITION) <= F.lit(last))
    return frame


def _no_snapshots(table_path: str | Path) -> FileNotFoundError:
    return FileNotFoundError(f"no Delta table at {table_path}: write feature snapshots into it first")


def snapshot_history(spark: SparkSession, table_path: str | Path) -> list[tables.Commit]:
    """The commits of ``feature_snapshots``, newest first."""
    try:
        return tables.history(spark, table_path)
    except AnalysisException as error:
        if tables.is_delta_table(spark, table_path):
            raise
        raise _no_snapshots(table_path) from error


def read_snapshots(spark: SparkSession, table_path: str | Path, version: int | None = None) -> tuple[DataFrame, int]:
    """``feature_snapshots`` at ``version`` (the latest if None), and the version actually read."""
    try:
        version = tables.latest_version(spark, table_path) if version is None else int(version)
        # Read by explicit version even for "latest": the version recorded is the one read, whatever commits later.
        return spark.read.format("delta").option("versionAsOf", version).load(str(table_path)), version
    except Exception as error:  # time travel to a missing table raises a Java error, not an AnalysisException
        if tables.is_delta_table(spark, table_path):
            raise  # a table, but not that version
        raise _no_snapshots(table_path) from error


def label_provenance(labels: DataFrame, contract: Contract) -> dict[str, Any]:
    """Which label partitions were read and a hash of their rows, so a rebuild can prove it reads the same."""
    return _label_provenance_and_rows(labels, contract)[0]


def _label_provenance_and_rows(labels: DataFrame, contract: Contract) -> tuple[dict[str, Any], int]:
    row = labels.agg(
        F.min(PARTITION).alias("first"),
        F.max(PARTITION).alias("last"),
        F.size(F.collect_set(PARTITION)).alias("partitions"),
        F.count(F.lit(1)).alias("n"),
        _row_hash_sum(list(contract.label_input_columns)).alias("h"),
    ).first()
    assert row is not None
    provenance = {
        "labels_first_partition": str(row["first"]),
        "labels_last_partition": str(row["last"]),
        "label_partitions": int(row["partitions"]),
        "labels_fingerprint": _fingerprint(row["n"], row["h"]),
    }
    return provenance, int(row["n"])


def model_checksums_by_day(spark: SparkSession, snapshots_path: str | Path, version: int) -> dict[str, str | None]:
    """The dbt model checksum behind each day of ``feature_snapshots`` as of ``version``: the one its latest write
    recorded, in a one-day or a range commit (None: that day's file carried none)."""
    return model_checksums_as_of(tables.history(spark, snapshots_path), version)


def model_checksums_as_of(commits: list[tables.Commit], version: int) -> dict[str, str | None]:
    """``model_checksums_by_day`` from the history of ``feature_snapshots``, already read."""
    latest_per_day: dict[str, str | None] = {}
    for c in sorted(commits, key=lambda c: c.version):
        if c.version <= version:
            for day, lineage in commit_days(c.user_metadata).items():
                latest_per_day[day] = lineage.get(DBT_MODEL_CHECKSUM) or None
    return latest_per_day


def model_checksum_lineage(by_day: dict[str, str | None]) -> dict[str, Any]:
    """A training set's lineage from its snapshot days' checksums: the newest day's under ``DBT_MODEL_CHECKSUM``,
    and every distinct one, oldest day first, under ``DBT_MODEL_CHECKSUMS``."""
    days = sorted(by_day)
    return {
        DBT_MODEL_CHECKSUM: by_day[days[-1]] if days else None,
        DBT_MODEL_CHECKSUMS: list(dict.fromkeys(by_day[day] for day in days)),
    }


# --- the job -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSetWrite:
    """What a build wrote, for the commit, the asset's metadata and the person on call."""

    table_path: str
    version: int
    feature_store_version: int
    stats: PitStats
    fingerprint: str
    future_feature_rows: int  # rows whose snapshot was not complete at their prediction time: must be 0
    commit_metadata: dict[str, Any]
    seconds: float
    columns: list[tuple[str, str]] = field(default_factory=list)  # (name, Spark type) as written


def build_training_set(
    spark: SparkSession,
    store: OfflineStorePaths,
    labels_dir: Path,
    contract: Contract,
    feature_store_version: int | None = None,
    max_snapshot_age_days: int | None = None,
    labels_matured_by: dt.date | None = None,
) -> tuple[PitJoin, int, dict[str, Any]]:
    """The training set (lazy) from the label partitions under ``labels_dir`` and the store's
    ``feature_snapshots`` at ``feature_store_version`` (latest if None).

    ``labels_matured_by`` trains as of that day: labels that matured later are left out (all if None). A retrain
    for day D then reads what was known on D, however far the lake has been built since (a replayed story, a
    retrain re-run later). Returns the join, the feature-store version read and the labels' provenance. Passing an
    older ``feature_store_version`` rebuilds through Delta time travel exactly what was built from it then.
    """
    labels = read_labels(spark, labels_dir, last=labels_matured_by)
    provenance, rows = _label_provenance_and_rows(labels, contract)
    snapshots, version = read_snapshots(spark, store.feature_snapshots, feature_store_version)
    join = point_in_time_join(prepare_labels(labels, contract), snapshots, contract, max_snapshot_age_days, rows)
    return join, version, {"labels_path": str(labels_dir), **provenance}


def write_training_set(
    spark: SparkSession,
    join: PitJoin,
    feature_store_version: int,
    table_path: str | Path,
    contract: Contract,
    provenance: dict[str, Any] | None = None,
    dagster_run_id: str | None = None,
    max_snapshot_age_days: int | None = None,
    churn_horizon_days: int | None = None,
    dbt_model_checksums: dict[str, str | None] | None = None,
) -> TrainingSetWrite:
    """Overwrite the training-set table with ``join.frame`` (one new version) and verify what was written.

    ``dbt_model_checksums``: the checksum behind each snapshot day read (``model_checksums_by_day``).
    """
    started = time.monotonic()
    write_id = tables.new_write_id()
    metadata = {
        "job": JOB,
        "write_id": write_id,
        "dagster_run_id": dagster_run_id,
        "feature_store_version": feature_store_version,
        "churn_horizon_days": churn_horizon_days,
        "max_snapshot_age_days": max_snapshot_age_days,
        "feature_columns": len(join.feature_columns),
        **model_checksum_lineage(dbt_model_checksums or {}),
        "without_snapshot_sample": join.stats.without_snapshot_sample[:3],
        **join.stats.as_dict(),
        **(provenance or {}),
    }
    # Counted and hashed as the rows stream into the writer: what is checked is what was written, in one pass.
    observation = Observation(f"training_set_{write_id}")
    leaks = F.col(FEATURE_SNAPSHOT_DATE) > snapshot_cutoff(F.col(contract.prediction_time))
    observed = join.frame.observe(
        observation,
        F.count(F.lit(1)).alias("rows"),
        F.sum(leaks.cast("long")).alias("leaks"),
        _row_hash_sum(join.frame.columns).alias("hash"),
    )
    (
        observed.write.format("delta")
        .mode("overwrite")
        # The training set follows the features: a feature added upstream is a new column in the next version.
        .option("overwriteSchema", "true")
        # One adaptive shuffle of the (label-sized) result into right-sized files instead of one per snapshot file.
        .option("optimizeWrite", "true")
        .option("userMetadata", json.dumps(metadata, sort_keys=True, default=str))
        .save(str(table_path))
    )
    version = tables.version_written_by(spark, table_path, write_id)
    seen = observation.get
    if seen["rows"] != join.stats.rows:
        raise RuntimeError(f"wrote {seen['rows']} rows where the join resolved {join.stats.rows}: labels changed?")
    return TrainingSetWrite(
        table_path=str(table_path),
        version=version,
        feature_store_version=feature_store_version,
        stats=join.stats,
        fingerprint=_fingerprint(seen["rows"], seen["hash"]),
        future_feature_rows=int(seen["leaks"] or 0),
        commit_metadata=metadata,
        seconds=round(time.monotonic() - started, 3),
        columns=[(f.name, f.dataType.simpleString()) for f in join.frame.schema.fields],
    )


def run(
    spark: SparkSession,
    store: OfflineStorePaths,
    labels_dir: Path,
    contract: Contract,
    feature_store_version: int | None = None,
    max_snapshot_age_days: int | None = None,
    dagster_run_id: str | None = None,
    churn_horizon_days: int | None = None,
    labels_matured_by: dt.date | None = None,
) -> TrainingSetWrite:
    """The whole job: build from the labels and ``feature_snapshots``, write a new version of the table.

    ``churn_horizon_days``, the horizon the labels were made with, is recorded in the commit (None: unknown).
    """
    commits = snapshot_history(spark, store.feature_snapshots)  # read once: the version and the checksums
    if feature_store_version is None:
        feature_store_version = commits[0].version
    join, version, provenance = build_training_set(spark, store, labels_dir, contract, feature_store_version,
                                                   max_snapshot_age_days, labels_matured_by)  # fmt: skip
    try:
        return write_training_set(
            spark,
            join,
            version,
            store.training_set,
            contract,
            provenance=provenance,
            dagster_run_id=dagster_run_id,
            max_snapshot_age_days=max_snapshot_age_days,
            churn_horizon_days=churn_horizon_days,
            dbt_model_checksums=model_checksums_as_of(commits, version),
        )
    finally:
        join.release()


def rebuild_training_set(
    spark: SparkSession, version: int, store: OfflineStorePaths, contract: Contract, labels_dir: Path | None = None
) -> tuple[PitJoin, dict[str, Any]]:
    """Rebuild version ``version`` of the training set from the feature-store version and labels it names.

    The labels are read where the commit says they were; ``labels_dir`` is where to look instead if that folder
    is gone (the lake moved since). Raises ``LabelsChangedError`` if the label partitions it read were rewritten
    since (then no rebuild can be identical, and saying so beats returning something else). Compare with
    ``content_fingerprint``.
    """
    meta = tables.commit(spark, store.training_set, version).user_metadata
    if meta.get("job") != JOB or meta.get("feature_store_version") is None:
        raise ValueError(f"version {version} of {store.training_set} was not written by the training-set job")
    recorded = location_argument(meta["labels_path"])
    # An object store's prefix is taken as recorded (it does not move with a checkout of the lake).
    labels_dir = recorded if labels_dir is None or is_uri(recorded) or Path(recorded).exists() else labels_dir
    labels = read_labels(
        spark,
        labels_dir,
        dt.date.fromisoformat(meta["labels_first_partition"]),
        dt.date.fromisoformat(meta["labels_last_partition"]),
    )
    found = label_provenance(labels, contract)["labels_fingerprint"]
    if found != meta["labels_fingerprint"]:
        raise LabelsChangedError(
            f"the labels {meta['labels_first_partition']}..{meta['labels_last_partition']} under "
            f"{meta['labels_path']} changed since version {version} was built "
            f"(fingerprint {meta['labels_fingerprint']}, now {found})"
        )
    snapshots, _ = read_snapshots(spark, store.feature_snapshots, int(meta["feature_store_version"]))
    join = point_in_time_join(prepare_labels(labels, contract), snapshots, contract, meta.get("max_snapshot_age_days"))
    return join, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.training_set", description=__doc__.split("\n\n")[0])
    parser.add_argument("--contract", type=Path, required=True, help="the problem's contract, as JSON")
    parser.add_argument(
        "--store-root", type=location_argument, required=True, help="the offline store's folder (or s3:// prefix)"
    )
    parser.add_argument(
        "--labels", type=location_argument, required=True, help="the label folder (date=YYYY-MM-DD/*.parquet files)"
    )
    parser.add_argument("--feature-store-version", type=int, default=None, help="default: the latest")
    parser.add_argument("--max-snapshot-age-days", type=int, default=None, help="default: no limit")
    parser.add_argument(
        "--labels-matured-by", type=dt.date.fromisoformat, default=None, help="YYYY-MM-DD; default: every label"
    )
    parser.add_argument("--churn-horizon-days", type=int, default=None, help="recorded in the commit metadata")
    parser.add_argument("--run-id", default=None, help="recorded in the commit metadata")
    parser.add_argument(
        "--rebuild", type=int, metavar="VERSION", default=None, help="rebuild VERSION and check it is identical"
    )
    add_session_arguments(parser)
    args = parser.parse_args(argv)
    contract = Contract.from_file(args.contract)
    store = OfflineStorePaths(store_root=args.store_root)
    spark = session_from_arguments(args, object_store_from_arguments(args, args.store_root, args.labels))
    if args.rebuild is not None:
        join, meta = rebuild_training_set(spark, args.rebuild, store, contract, args.labels)
        rebuilt = content_fingerprint(join.frame)
        stored = spark.read.format("delta").option("versionAsOf", args.rebuild).load(str(store.training_set))
        original = content_fingerprint(stored)
        join.release()
        same = rebuilt == original
        print(f"v{args.rebuild} from feature_store_version {meta['feature_store_version']}: "
              f"{'identical' if same else 'DIFFERENT'} ({original} vs {rebuilt})")  # fmt: skip
        return 0 if same else 1
    done = run(spark, store, args.labels, contract, args.feature_store_version, args.max_snapshot_age_days,
               args.run_id, args.churn_horizon_days, args.labels_matured_by)  # fmt: skip
    print(json.dumps({"version": done.version, "feature_store_version": done.feature_store_version,
                      "fingerprint": done.fingerprint, "future_feature_rows": done.future_feature_rows,
                      **done.stats.as_dict()}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
