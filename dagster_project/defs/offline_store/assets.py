"""The offline store's assets: daily Delta feature snapshots, the point-in-time training set, and their upkeep.

The assets only wire Dagster to the jobs in ``spark_jobs`` (which run alone as well) and turn what the jobs
report into metadata and checks. They hand the jobs explicit paths, built from the lake's layout
(``dagster_project.lake``): the dbt exports to read and the offline store's folder. They share the run process's
one Spark session through ``SparkResource``.
"""

import datetime as dt
from typing import Any

import dagster as dg
from pydantic import Field

from dagster_project import asset_keys, faults
from dagster_project.lake import FEATURES, offline_store, table_dir
from dagster_project.partitions import ranged_asset
from dagster_project.problem import Problem
from dagster_project.resources import ContractResource, LakeResource, SparkResource
from spark_jobs import feature_snapshots as snapshots_job
from spark_jobs import maintenance as maintenance_job
from spark_jobs import training_set as training_set_job
from spark_jobs.contract import DBT_MODEL_CHECKSUM, DBT_MODEL_CHECKSUMS

NO_FUTURE_FEATURES = "no_feature_from_the_future"
EVERY_LABEL_HAS_A_SNAPSHOT = "every_label_has_a_snapshot"
PROTECTED_VERSIONS_READABLE = "protected_versions_readable"
# The offline store's Delta tables take one writing Spark driver at a time: on an object store, Delta's log store
# checks that a version is absent and then writes it, atomically within one driver only (spark_jobs.object_store).
# Every step that commits to them takes this pool, whose limit is one step (the instance's pools' default_limit).
OFFLINE_STORE_POOL = "offline_store_writer"


def _column_schema(columns: list[tuple[str, str]]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns])


class FeatureSnapshotsConfig(dg.Config):
    evolve_schema: bool = Field(
        default=False,
        description="Accept new feature columns (an additive schema change; earlier days read them as null). "
        "Removed or retyped columns are always refused: they need a new, versioned table.",
    )


def build_feature_snapshots(partitions: dg.PartitionsDefinition, problem: Problem) -> dg.AssetsDefinition:
    """``offline_store/feature_snapshots`` over ``partitions``, from the export of the problem's feature model."""
    features_model = problem.contract.features_model

    @ranged_asset(
        key=asset_keys.FEATURE_SNAPSHOTS,
        deps=[asset_keys.lake_export(features_model)],
        partitions_def=partitions,
        group_name=asset_keys.OFFLINE_STORE_GROUP,
        kinds={"spark", "delta"},
        pool=OFFLINE_STORE_POOL,
    )
    def feature_snapshots(
        context: dg.AssetExecutionContext,
        config: FeatureSnapshotsConfig,
        spark: SparkResource,
        lake: LakeResource,
        contract: ContractResource,
    ) -> dg.MaterializeResult:
        """The run's days of the feature model export in the Delta table `lake/offline_store/feature_snapshots`,
        partitioned by the contract's day column, in one commit. Each day is replaced whole with `replaceWhere` (a
        rerun is idempotent), its schema must match the table's (see `evolve_schema`), and the commit names the
        Dagster run and, per day, the checksum of the dbt model that produced the day's file, as the export wrote it
        into the file (null for a file without one)."""
        store = offline_store(lake.location)
        days = [dt.date.fromisoformat(day) for day in context.partition_keys]
        # All the run's days (a backfill's range, or one day) in one Delta commit: one write instead of one per day.
        written = snapshots_job.snapshot_days(
            spark.get_session(lake.object_store),
            [(day, lake.partition_path(FEATURES, features_model, day)) for day in days],
            store,
            contract.contract,
            dagster_run_id=context.run.run_id,
            evolve_schema=config.evolve_schema,
            object_store=lake.object_store,
        )
        faults.write_point(faults.SNAPSHOT)
        for done in written:
            context.log.info(f"{done.snapshot_date}: {done.rows} rows -> version {done.version}")
        last = written[-1]
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(w.rows for w in written),
                "dagster/column_schema": _column_schema(last.columns),
                "table_version": last.version,
                "table_path": dg.MetadataValue.path(str(store.feature_snapshots)),
                "feature_columns": len(last.feature_columns),
                DBT_MODEL_CHECKSUM: last.provenance[DBT_MODEL_CHECKSUM],  # None (null): the file named none
                "source_metadata": dg.MetadataValue.json(last.provenance["source_metadata"]),
                "schema_change": last.schema_change.describe(),
                "days": dg.MetadataValue.json(
                    {
                        str(w.snapshot_date): {
                            "rows": w.rows,
                            "version": w.version,
                            DBT_MODEL_CHECKSUM: w.provenance[DBT_MODEL_CHECKSUM],
                        }
                        for w in written
                    }
                ),
                "seconds": last.seconds,  # the one commit's, shared by its days
            }
        )

    return feature_snapshots


class TrainingSetConfig(dg.Config):
    feature_store_version: int | None = Field(
        default=None,
        description="Build from this version of feature_snapshots (Delta time travel); the latest if unset.",
    )
    max_snapshot_age_days: int | None = Field(
        default=None,
        description="Ignore snapshots older than this many days before a label's cutoff (like a feature TTL); "
        "such labels count as having no snapshot. No limit if unset.",
    )
    labels_matured_by: str | None = Field(
        default=None,
        description="Train as of this day (YYYY-MM-DD): leave out the labels that matured after it. Every label if "
        "unset. The main command's story sets it to the night it retrains after.",
    )


def build_training_set(problem: Problem) -> dg.AssetsDefinition:
    """``offline_store/training_set``, from the feature snapshots and the export of the problem's label model."""
    labels_model = problem.contract.labels_model

    @dg.asset(
        key=asset_keys.TRAINING_SET,
        deps=[asset_keys.FEATURE_SNAPSHOTS, asset_keys.lake_export(labels_model)],
        group_name=asset_keys.OFFLINE_STORE_GROUP,
        kinds={"spark", "delta"},
        pool=OFFLINE_STORE_POOL,
        check_specs=[
            dg.AssetCheckSpec(
                NO_FUTURE_FEATURES,
                asset=asset_keys.TRAINING_SET,
                blocking=True,
                description="No row uses a snapshot that was not complete at its prediction time "
                "(a snapshot of day D is complete at the end of D). Checked on the version written.",
            ),
            dg.AssetCheckSpec(
                EVERY_LABEL_HAS_A_SNAPSHOT,
                asset=asset_keys.TRAINING_SET,
                description="Every matured label found a snapshot at or before its cutoff; those that did not are "
                "left out of the table and sampled in this check's metadata.",
            ),
        ],
    )
    def training_set(
        context: dg.AssetExecutionContext,
        config: TrainingSetConfig,
        spark: SparkResource,
        lake: LakeResource,
        contract: ContractResource,
    ) -> dg.MaterializeResult:
        """Every matured label joined to the latest feature snapshot complete at its own prediction time, never a
        later one, written as a new version of the Delta table `lake/offline_store/training_set`. The version of
        `feature_snapshots` it read is recorded here and in the commit, so the set can be rebuilt identically
        (`spark_jobs.training_set.rebuild_training_set`)."""
        session = spark.get_session(lake.object_store)
        done = training_set_job.run(
            session,
            offline_store(lake.location),
            table_dir(lake.location, FEATURES, labels_model),
            contract.contract,
            feature_store_version=config.feature_store_version,
            max_snapshot_age_days=config.max_snapshot_age_days,
            dagster_run_id=context.run.run_id,
            churn_horizon_days=contract.contract.horizon_days,
            labels_matured_by=dt.date.fromisoformat(config.labels_matured_by) if config.labels_matured_by else None,
        )
        faults.write_point(faults.TRAINING_SET)
        stats = done.stats
        if stats.without_snapshot:
            context.log.warning(
                f"{stats.without_snapshot} of {stats.labels} labels have no snapshot at or before their cutoff; "
                f"left out of the training set (sample in the metadata)"
            )
        meta = done.commit_metadata
        metadata: dict[str, Any] = {
            "dagster/row_count": stats.rows,
            "dagster/column_schema": _column_schema(done.columns),
            "feature_store_version": done.feature_store_version,
            "training_set_version": done.version,
            "dagster_run_id": context.run.run_id,
            "table_path": dg.MetadataValue.path(done.table_path),
            "labels": stats.labels,
            "labels_exact_snapshot": stats.exact,
            "labels_earlier_snapshot": stats.earlier,
            "labels_without_snapshot": stats.without_snapshot,
            "max_snapshot_age_days": stats.max_snapshot_age_days if stats.max_snapshot_age_days is not None else -1,
            "label_partitions": f"{meta['labels_first_partition']}..{meta['labels_last_partition']} "
            f"({meta['label_partitions']})",
            DBT_MODEL_CHECKSUM: meta[DBT_MODEL_CHECKSUM],
            DBT_MODEL_CHECKSUMS: dg.MetadataValue.json(meta[DBT_MODEL_CHECKSUMS]),
            "content_fingerprint": done.fingerprint,
            "seconds": done.seconds,
        }
        if stats.without_snapshot_sample:
            metadata["without_snapshot_sample"] = dg.MetadataValue.json(stats.without_snapshot_sample)
        return dg.MaterializeResult(
            metadata=metadata,
            data_version=dg.DataVersion(done.fingerprint),
            check_results=[
                dg.AssetCheckResult(
                    check_name=NO_FUTURE_FEATURES,
                    passed=done.future_feature_rows == 0,
                    metadata={"rows_with_future_features": done.future_feature_rows},
                ),
                dg.AssetCheckResult(
                    check_name=EVERY_LABEL_HAS_A_SNAPSHOT,
                    passed=stats.without_snapshot == 0,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "labels_without_snapshot": stats.without_snapshot,
                        "sample": dg.MetadataValue.json(stats.without_snapshot_sample),
                    },
                ),
            ],
        )

    return training_set


class TableMaintenanceConfig(dg.Config):
    min_retention_hours: float = Field(
        default=maintenance_job.DEFAULT_MIN_RETENTION_HOURS,
        description="Removed files are kept at least this long (168 h = 7 days, Delta's default), longer when "
        "a protected version needs it.",
    )
    headroom_hours: float = Field(
        default=maintenance_job.DEFAULT_HEADROOM_HOURS,
        description="How long protected versions stay within the retention after this run (two weekly runs).",
    )
    optimize: bool = Field(default=True, description="Compact small files (OPTIMIZE).")
    vacuum: bool = Field(default=True, description="Delete files outside the retention (VACUUM).")


@dg.asset(
    key=asset_keys.TABLE_MAINTENANCE,
    deps=[asset_keys.FEATURE_SNAPSHOTS, asset_keys.TRAINING_SET],
    # Its own group: jobs that select the offline store's group by name (the nightly one) must not vacuum.
    group_name=f"{asset_keys.OFFLINE_STORE_GROUP}_maintenance",
    kinds={"spark", "delta"},
    pool=OFFLINE_STORE_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            PROTECTED_VERSIONS_READABLE,
            asset=asset_keys.TABLE_MAINTENANCE,
            description="After VACUUM, every protected version (referenced by a registered model) still has "
            "all its files and its log: time travel to it works.",
        )
    ],
)
def table_maintenance(
    context: dg.AssetExecutionContext, config: TableMaintenanceConfig, spark: SparkResource, lake: LakeResource
) -> dg.MaterializeResult:
    """Weekly upkeep of the offline store's Delta tables: OPTIMIZE (compaction) and VACUUM, with a retention
    that never breaks time travel to a protected version. Protected versions come from
    `lake/offline_store/_protected_versions.json` (`{"feature_snapshots": [..], "training_set": [..]}`, written by
    the ML side), the table property `churn_platform.protected_versions`, and the feature-store version each
    protected training set was built from. See `spark_jobs/maintenance.py` for the retention rule."""
    reports = maintenance_job.run(
        spark.get_session(lake.object_store),
        offline_store(lake.location),
        min_retention_hours=config.min_retention_hours,
        headroom_hours=config.headroom_hours,
        optimize=config.optimize,
        vacuum=config.vacuum,
        dagster_run_id=context.run.run_id,
        object_store=lake.object_store,
    )
    metadata: dict[str, Any] = {}
    for r in reports:
        metadata[f"{r.table}/latest_version"] = r.latest_version if r.latest_version is not None else -1
        metadata[f"{r.table}/protected_versions"] = dg.MetadataValue.json(r.protected_versions)
        metadata[f"{r.table}/retention_hours"] = r.retention_hours if r.retention_hours is not None else -1.0
        metadata[f"{r.table}/files_compacted"] = r.files_compacted
        metadata[f"{r.table}/files_vacuumed"] = r.files_vacuumed
    unreadable = {r.table: {"unreadable": r.unreadable_protected_versions, "unknown": r.unknown_protected_versions}
                  for r in reports if not r.protected_readable}  # fmt: skip
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=PROTECTED_VERSIONS_READABLE,
                passed=not unreadable,
                metadata={"problems": dg.MetadataValue.json(unreadable)},
            )
        ],
    )
