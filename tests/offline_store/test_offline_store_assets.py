"""The offline store's assets through Dagster's own ``materialize``, on hand-built exports in a temporary lake."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest
from offline_lake import OfflineLake, end_of, feature_table, model_checksum, write_features, write_labels
from pyspark.sql import SparkSession

from dagster_project import asset_keys
from dagster_project.definitions import build_definitions
from dagster_project.defs.offline_store import assets as offline
from dagster_project.partitions import daily_partitions
from dagster_project.problem import load_problem
from dagster_project.resources import ContractResource, LakeResource, SparkResource, ThresholdsResource
from dagster_project.settings import Settings
from spark_jobs import tables
from spark_jobs.contract import DBT_MODEL_CHECKSUM, DBT_MODEL_CHECKSUMS

pytestmark = pytest.mark.spark

DAYS = [dt.date(2025, 1, 1), dt.date(2025, 1, 2)]
CUSTOMERS = ["c-1", "c-2", "c-3"]


def test_materialize_snapshots_training_set_and_maintenance(spark: SparkSession, settings: Settings):
    lake_root = Path(settings.lake_root)  # type: ignore[arg-type]
    lake = OfflineLake(lake_root)
    paths = lake.store
    # Each day's export names the dbt model that made it (the model changed between the two days).
    checksums = {d: model_checksum(f"customer_features as of {d}") for d in DAYS}
    for d in DAYS:
        write_features(lake_root, d, feature_table(CUSTOMERS, d), checksum=checksums[d])
    write_labels(lake_root, DAYS[1], [(c, DAYS[1], end_of(DAYS[1]), i % 2) for i, c in enumerate(CUSTOMERS)])
    write_labels(lake_root, DAYS[1] + dt.timedelta(days=1), [("c-9", DAYS[1], end_of(DAYS[1]), 1)])
    problem = load_problem(settings)
    resources = {
        "contract": ContractResource.of(problem.contract),
        "spark": SparkResource.from_settings(settings),
        "lake": LakeResource(root=str(lake_root)),
        "thresholds": ThresholdsResource(**settings.thresholds.model_dump()),
    }
    assert resources["spark"].get_session() is spark  # one session per process, shared with the jobs

    instance = dg.DagsterInstance.ephemeral()
    for d in DAYS:
        result = dg.materialize(
            [offline.build_feature_snapshots(daily_partitions(settings), problem)],
            partition_key=d.isoformat(),
            resources=resources,
            instance=instance,
        )
        assert result.success
    [snapshot_event] = result.asset_materializations_for_node("offline_store__feature_snapshots")
    assert snapshot_event.metadata["table_version"].value == 1
    assert snapshot_event.metadata["dagster/row_count"].value == len(CUSTOMERS)
    commit = tables.commit(spark, paths.feature_snapshots, 1).user_metadata
    assert commit["dagster_run_id"] == result.run_id and commit["snapshot_date"] == "2025-01-02"
    assert commit["source"] == str(lake.features(DAYS[1]))  # the day's export, as the asset found it in the lake
    # The lineage is the one the file carries: the asset passes none of its own.
    assert commit[DBT_MODEL_CHECKSUM] == checksums[DAYS[1]]
    assert snapshot_event.metadata[DBT_MODEL_CHECKSUM].value == checksums[DAYS[1]]

    result = dg.materialize(
        [offline.build_training_set(problem), offline.table_maintenance], resources=resources, instance=instance,
        selection=[asset_keys.TRAINING_SET, asset_keys.TABLE_MAINTENANCE],
    )  # fmt: skip
    assert result.success
    [event] = result.asset_materializations_for_node("offline_store__training_set")
    meta = {k: v.value for k, v in event.metadata.items()}
    assert meta["feature_store_version"] == 1 and meta["training_set_version"] == 0
    assert meta["dagster_run_id"] == result.run_id
    assert meta["labels"] == 4 and meta["labels_without_snapshot"] == 1 and meta["dagster/row_count"] == 3
    assert [s["customer_id"] for s in meta["without_snapshot_sample"]] == ["c-9"]
    commit = tables.commit(spark, paths.training_set, 0).user_metadata
    assert commit["feature_store_version"] == 1 and commit["dagster_run_id"] == result.run_id
    assert commit[DBT_MODEL_CHECKSUM] == meta[DBT_MODEL_CHECKSUM] == checksums[DAYS[1]]
    assert commit[DBT_MODEL_CHECKSUMS] == meta[DBT_MODEL_CHECKSUMS] == [checksums[d] for d in DAYS]
    # The asset handed the job the export folder and the contract's horizon: the job itself reads no settings.
    assert commit["labels_path"] == str(lake.labels)
    assert commit["churn_horizon_days"] == problem.contract.horizon_days

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks[offline.NO_FUTURE_FEATURES].passed
    assert not checks[offline.EVERY_LABEL_HAS_A_SNAPSHOT].passed  # c-9 has no snapshot: a warning, reported
    assert checks[offline.PROTECTED_VERSIONS_READABLE].passed

    [upkeep] = result.asset_materializations_for_node("offline_store__table_maintenance")
    assert upkeep.metadata["feature_snapshots/retention_hours"].value == 168  # nothing protected: the minimum
    assert json.loads(json.dumps(upkeep.metadata["training_set/protected_versions"].value)) == []


def test_definitions_wire_the_weekly_maintenance_schedule(settings: Settings):
    defs = build_definitions(settings)
    schedule = defs.resolve_schedule_def("weekly_offline_store_maintenance")
    assert schedule.cron_schedule == "0 4 * * 0" and schedule.execution_timezone == "UTC"
    job = defs.resolve_job_def("maintain_offline_store")
    assert job.asset_layer.executable_asset_keys == {asset_keys.TABLE_MAINTENANCE}  # it vacuums, nothing else
    graph = defs.resolve_asset_graph()
    contract = load_problem(settings).contract
    assert graph.get(asset_keys.FEATURE_SNAPSHOTS).parent_keys == {asset_keys.lake_export(contract.features_model)}
    assert graph.get(asset_keys.TRAINING_SET).parent_keys == {
        asset_keys.FEATURE_SNAPSHOTS,
        asset_keys.lake_export(contract.labels_model),
    }


def test_a_range_of_days_is_one_run_and_one_commit(spark: SparkSession, settings: Settings):
    """A backfill hands the asset several days in one run: they become one version, with each day's lineage."""
    lake_root = Path(settings.lake_root)  # type: ignore[arg-type]
    lake = OfflineLake(lake_root)
    checksums = {d: model_checksum(f"customer_features as of {d}") for d in DAYS}
    for d in DAYS:
        write_features(lake_root, d, feature_table(CUSTOMERS, d), checksum=checksums[d])
    problem = load_problem(settings)
    result = dg.materialize(
        [offline.build_feature_snapshots(daily_partitions(settings), problem)],
        tags={
            "dagster/asset_partition_range_start": DAYS[0].isoformat(),
            "dagster/asset_partition_range_end": DAYS[-1].isoformat(),
        },
        resources={
            "contract": ContractResource.of(problem.contract),
            "spark": SparkResource.from_settings(settings),
            "lake": LakeResource(root=str(lake_root)),
        },
    )
    assert result.success
    events = result.asset_materializations_for_node("offline_store__feature_snapshots")  # one per day
    assert sorted(e.partition for e in events) == [d.isoformat() for d in DAYS]
    event = events[-1]
    assert event.metadata["table_version"].value == 0
    assert event.metadata["dagster/row_count"].value == len(CUSTOMERS) * len(DAYS)
    assert event.metadata["days"].value == {
        d.isoformat(): {"rows": len(CUSTOMERS), "version": 0, DBT_MODEL_CHECKSUM: checksums[d]} for d in DAYS
    }
    assert tables.latest_version(spark, lake.store.feature_snapshots) == 0
    commit = tables.commit(spark, lake.store.feature_snapshots, 0).user_metadata
    assert commit["dagster_run_id"] == result.run_id
    assert {d: day[DBT_MODEL_CHECKSUM] for d, day in commit["days"].items()} == {
        d.isoformat(): checksums[d] for d in DAYS
    }
