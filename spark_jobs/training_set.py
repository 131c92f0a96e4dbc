"""Point-in-time-correct training sets: every label row joined to the features that were known when it was made.

When is a snapshot known?
-------------------------
A label row carries its prediction time (the contract's ``prediction_time`` column), the moment the prediction
would have been made (any timestamp, not only a day boundary). The snapshot of day ``D`` describes the entity as of
the *end* of ``D``: it is complete
at ``D + 1 day, 00:00:00``, and only from then on may a prediction use it. So a row may use snapshot ``D`` iff::

    D + 1 day (at 00:00:00) <= prediction_time   <=>   D <= date(prediction_time) - 1 day

for every timestamp, midnight included: a prediction at ``2025-03-02 00:00:00`` may use the snapshot of
``2025-03-01`` (complete at that very instant); one at ``2025-03-01 23:59:59.999999`` may only use ``2025-02-28``
or earlier. The row gets the *latest* snapshot on or before that cutoff date, never a later one. Timestamps are
zone-less UTC wall-clock times, like everywhere in the lake (the session's time zone is UTC).

How the join is done (fast, and still exact)
--------------------------------------------
An as-of join written as a window over every (label, earlier snapshot) pair is quadratic in the history; this
one is not. Snapshots are daily, so each label's *candidate* snapshot date is plain arithmetic (the cutoff
above), and almost every label finds its snapshot by an equi-join on ``(entity, cutoff)``. Only the labels
whose candidate snapshot is missing (a late-arriving or skipped day, a customer who signed up after the cutoff)
fall back to an as-of search, ``max(snapshot day) <= cutoff``, over those few entities. Both searches read
only the two key columns; the feature columns are then read once, by an equi-join on the resolved
``(entity, feature_snapshot_date)``. Label-sized sides are broadcast, so the snapshot history is never
shuffled.

Labels with no snapshot at or before their cutoff (or none young enough, with ``max_snapshot_age_days``) cannot
be trained on; they are left out of the table but counted and sampled in the result, the commit metadata and
the Dagster asset's metadata, never dropped silently.

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

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from spark_jobs import tables
from spark_jobs.contract import (
    DBT_MODEL_CHECKSUM,
    DBT_MODEL_CHECKSUMS,
    FEATURE_SNAPSHOT_DATE,
    LABEL_SNAPSHOT_DATE,
    Contract,
)
from spark_jobs.feature_snapshots import commit_days, feature_columns
from spark_jobs.object_store import is_uri, location_argument
from spark_jobs.paths import OfflineStorePaths
from spark_jobs.session import add_session_arguments, object_store_from_arguments, session_from_arguments

JOB = "training_set"
CUTOFF = "_cutoff"  # the latest snapshot date a label may use
PARTITION = "date"  # the lake's partition folder of the label files
# Up to this many label rows, the label side of each join is broadcast and the snapshot history streams past it
# without a shuffle. Beyond it Spark plans ordinary shuffle joins (still correct, just not the fast path).
BROADCAST_LABEL_LIMIT = 2_000_000
SAMPLE_SIZE = 10


def snapshot_cutoff(prediction_time: Column) -> Column:
    """The latest snapshot date a prediction made at ``prediction_time`` may use: ``date(prediction_time) - 1``."""
    return F.date_sub(F.to_date(prediction_time), 1)


def latest_usable_snapshot_date(prediction_time: dt.datetime) -> dt.date:
    """The same rule in plain Python (the documentation and the tests' oracle)."""
    return prediction_time.date() - dt.timedelta(days=1)


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


@dataclass(frozen=True)
class PitStats:
    """How every label row fared in the point-in-time join."""

    labels: int
    exact: int  # joined to the snapshot of its cutoff day
    earlier: int  # that day's snapshot is missing: joined to the latest earlier one
    without_snapshot: int  # no usable snapshot at or before the cutoff: left out, reported
    max_snapshot_age_days: int | None  # the oldest snapshot used, in days before its cutoff
    without_snapshot_sample: list[dict[str, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.exact + self.earlier

    def as_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "rows": self.rows,
            "labels_exact_snapshot": self.exact,
            "labels_earlier_snapshot": self.earlier,
            "labels_without_snapshot": self.without_snapshot,
            "max_snapshot_age_days": self.max_snapshot_age_days,
        }


@dataclass
class PitJoin:
    """The joined rows (lazy), their statistics, and the label-sized frames cached to compute them."""

    frame: DataFrame
    stats: PitStats
    feature_columns: list[str]
    cached: list[DataFrame] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for frame in self.cached:
            frame.unpersist()
        self.cached.clear()


def prepare_labels(labels: DataFrame, contract: Contract) -> DataFrame:
    """The label contract's columns, typed: zone-less prediction times, integer labels."""
    missing = [c for c in contract.label_input_columns if c not in labels.columns]
    if missing:
        raise ValueError(f"the labels lack the columns {missing} (have {labels.columns})")
    return labels.select(
        *contract.entity,
        # A zoned timestamp becomes its UTC wall-clock time (the session's zone is UTC).
        F.col(contract.prediction_time).cast("timestamp_ntz").alias(contract.prediction_time),
        F.col(contract.label_as_of).cast("date").alias(LABEL_SNAPSHOT_DATE),
        F.col(contract.label).cast("int").alias(contract.label),
    )


def point_in_time_join(
    labels: DataFrame,
    snapshots: DataFrame,
    contract: Contract,
    max_snapshot_age_days: int | None = None,
    broadcast_label_limit: int = BROADCAST_LABEL_LIMIT,
) -> PitJoin:
    """Join each label row to the latest snapshot complete at its prediction time (see the module docstring).

    ``labels``: the entity, prediction time, ``label_snapshot_date`` and label (``prepare_labels``);
    ``snapshots``: the entity, the day column and the feature columns, one row per entity and day.
    ``max_snapshot_age_days``: if set, a snapshot older than this many days before the cutoff counts as none.
    Call ``release()`` on the result once its frame has been written.
    """
    key_columns = list(contract.training_set_keys)
    entity, day, when = list(contract.entity), contract.as_of, contract.prediction_time
    features = feature_columns(snapshots.schema, contract.snapshot_keys)
    clash = sorted(set(features) & {*key_columns, CUTOFF})
    if clash:
        raise ValueError(f"feature columns {clash} collide with the training set's key columns")
    labels = labels.withColumn(CUTOFF, snapshot_cutoff(F.col(when))).persist(StorageLevel.MEMORY_AND_DISK)
    cached = [labels]
    no_id = F.greatest(*[F.col(c).isNull() for c in entity]) if len(entity) > 1 else F.col(entity[0]).isNull()
    bounds = labels.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.col(when).isNull().cast("int")).alias("no_time"),
        F.sum(no_id.cast("int")).alias("no_id"),
        F.min(CUTOFF).alias("first"),
        F.max(CUTOFF).alias("last"),
    ).first()
    assert bounds is not None
    if not bounds["n"]:
        labels.unpersist()
        raise ValueError("no label rows: nothing to build a training set from")
    if bounds["no_time"] or bounds["no_id"]:
        labels.unpersist()
        raise ValueError(f"{bounds['no_time']} label rows lack {when}, {bounds['no_id']} lack {'/'.join(entity)}")
    small = int(bounds["n"]) <= broadcast_label_limit

    def label_sized(frame: DataFrame) -> DataFrame:
        return F.broadcast(frame) if small else frame

    # No label may use a snapshot after the latest cutoff: those partitions are never read.
    history = snapshots.where(F.col(day) <= F.lit(bounds["last"]))
    if max_snapshot_age_days is not None:
        oldest = bounds["first"] - dt.timedelta(days=max_snapshot_age_days)
        history = history.where(F.col(day) >= F.lit(oldest))
    available = history.select(*entity, F.col(day).alias(CUTOFF))  # key columns: a narrow scan
    keys = labels.select(*entity, CUTOFF).distinct()
    # 1. The common case, an equi-join: the snapshot of the cutoff day itself exists.
    exact = (
        available.join(label_sized(keys), [*entity, CUTOFF], "left_semi")
        .withColumn(FEATURE_SNAPSHOT_DATE, F.col(CUTOFF))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    missing = keys.join(exact.select(*entity, CUTOFF), [*entity, CUTOFF], "left_anti").persist(
        StorageLevel.MEMORY_AND_DISK
    )
    cached += [exact, missing]
    resolved = exact
    if missing.count():
        # 2. The few labels whose cutoff day is missing (a late or skipped day, a customer who signed up after the
        #    cutoff): an as-of search, the latest snapshot before the cutoff, over their entities only.
        date, cutoff = F.col(day), F.col(CUTOFF)
        candidates = history.select(*entity, day).join(label_sized(missing), entity).where(date < cutoff)
        if max_snapshot_age_days is not None:
            candidates = candidates.where(date >= F.date_sub(cutoff, max_snapshot_age_days))
        earlier = candidates.groupBy(*entity, CUTOFF).agg(F.max(day).alias(FEATURE_SNAPSHOT_DATE))
        resolved = exact.unionByName(earlier)

    labelled = labels.join(resolved, [*entity, CUTOFF], "left").persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(labelled)
    fsd, cutoff = F.col(FEATURE_SNAPSHOT_DATE), F.col(CUTOFF)
    counts = labelled.agg(
        F.count(F.lit(1)).alias("labels"),
        F.sum((fsd == cutoff).cast("int")).alias("exact"),
        F.sum((fsd < cutoff).cast("int")).alias("earlier"),
        F.sum(fsd.isNull().cast("int")).alias("without"),
        F.max(F.datediff(cutoff, fsd)).alias("max_age"),
        F.min(fsd).alias("first_used"),
    ).first()
    assert counts is not None
    sample = (
        labelled.where(fsd.isNull())
        .orderBy(when, *entity)
        .select(*entity, when, LABEL_SNAPSHOT_DATE, CUTOFF)
        .limit(SAMPLE_SIZE)
        .collect()
        if counts["without"]
        else []
    )
    stats = PitStats(
        labels=int(counts["labels"]),
        exact=int(counts["exact"] or 0),
        earlier=int(counts["earlier"] or 0),
        without_snapshot=int(counts["without"] or 0),
        max_snapshot_age_days=None if counts["max_age"] is None else int(counts["max_age"]),
        without_snapshot_sample=[
            {
                **{c: str(r[c]) for c in entity},
                when: r[when].isoformat(),
                LABEL_SNAPSHOT_DATE: str(r[LABEL_SNAPSHOT_DATE]),
                "latest_usable_snapshot_date": str(r[CUTOFF]),
            }
            for r in sample
        ],
    )
    # 3. The features, read once: an equi-join of the snapshot history on the resolved (entity, day).
    usable = labelled.where(fsd.isNotNull()).drop(CUTOFF)
    if counts["first_used"] is not None:
        history = history.where(F.col(day) >= F.lit(counts["first_used"]))
    rows = history.withColumnRenamed(day, FEATURE_SNAPSHOT_DATE).join(
        label_sized(usable), [*entity, FEATURE_SNAPSHOT_DATE], "inner"
    )
    return PitJoin(frame=rows.select(*key_columns, *features), stats=stats, feature_columns=features, cached=cached)


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


def read_snapshots(spark: SparkSession, table_path: str | Path, version: int | None = None) -> tuple[DataFrame, int]:
    """``feature_snapshots`` at ``version`` (the latest if None), and the version actually read."""
    if not tables.is_delta_table(spark, table_path):
        raise FileNotFoundError(f"no Delta table at {table_path}: write feature snapshots into it first")
    version = tables.latest_version(spark, table_path) if version is None else int(version)
    # Read by explicit version even for "latest", so the version recorded is the one read, whatever commits later.
    return spark.read.format("delta").option("versionAsOf", version).load(str(table_path)), version


def label_provenance(labels: DataFrame, contract: Contract) -> dict[str, Any]:
    """Which label partitions were read and a hash of their rows, so a rebuild can prove it reads the same."""
    row = labels.agg(
        F.min(PARTITION).alias("first"),
        F.max(PARTITION).alias("last"),
        F.size(F.collect_set(PARTITION)).alias("partitions"),
        F.count(F.lit(1)).alias("n"),
        _row_hash_sum(list(contract.label_input_columns)).alias("h"),
    ).first()
    assert row is not None
    return {
        "labels_first_partition": str(row["first"]),
        "labels_last_partition": str(row["last"]),
        "label_partitions": int(row["partitions"]),
        "labels_fingerprint": _fingerprint(row["n"], row["h"]),
    }


def model_checksums_by_day(spark: SparkSession, snapshots_path: str | Path, version: int) -> dict[str, str | None]:
    """The dbt model checksum behind each day of ``feature_snapshots`` as of ``version``: the one its latest write
    recorded, in a one-day or a range commit (None: that day's file carried none)."""
    latest_per_day: dict[str, str | None] = {}
    for c in sorted(tables.history(spark, snapshots_path), key=lambda c: c.version):
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
    provenance = {"labels_path": str(labels_dir), **label_provenance(labels, contract)}
    snapshots, version = read_snapshots(spark, store.feature_snapshots, feature_store_version)
    join = point_in_time_join(prepare_labels(labels, contract), snapshots, contract, max_snapshot_age_days)
    return join, version, provenance


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
            dbt_model_checksums=model_checksums_by_day(spark, store.feature_snapshots, version),
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
