"""The platform on PostgreSQL: the deployment's Dagster instance (``deploy/dagster.yaml``) and MLflow's backend store
on a real server, configured by environment variables only; a champion trained and one nightly partition run end
to end on it (the ``deployed_platform`` fixture, ``tests/deployed_platform.py``). What landed is read back both
through Dagster and MLflow and straight from the tables, as an operator's psql would.
"""

from collections.abc import Iterator

import dagster as dg
import pytest
from dagster import DagsterEventType
from dagster._core.storage.dagster_run import DagsterRunStatus
from deployed_platform import DAGSTER_DB, MLFLOW_DB, DeployedPlatform

from dagster_project import pool_claims
from dagster_project.settings import get_settings


@pytest.fixture
def instance(deployed_platform: DeployedPlatform, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """The deployed instance, opened in this process with the environment the platform ran with."""
    for key, value in deployed_platform.env.items():
        if key.startswith(("PLATFORM_", "DAGSTER_")):
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    with dg.DagsterInstance.from_config(str(deployed_platform.dagster_home)) as instance:
        yield instance
    get_settings.cache_clear()


def _nightly_asset_keys() -> tuple[set[dg.AssetKey], set[dg.AssetKey]]:
    """The assets the nightly job selects, and those of them that are daily partitioned."""
    from dagster_project.definitions import defs as load_definitions

    defs = load_definitions()

    keys = set(defs.resolve_job_def("nightly_pipeline").asset_layer.executable_asset_keys)
    daily = {key for key in keys if defs.resolve_assets_def(key).partitions_def is not None}
    return keys, daily


def test_the_deployed_instance_is_postgres(instance: dg.DagsterInstance) -> None:
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    # Dagster's, with the pools' slots claimed one run at a time (tests/deploy/test_pool_claims.py).
    assert type(instance.event_log_storage) is pool_claims.PostgresEventLogStorage
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"


def test_the_night_ran_end_to_end_and_its_history_is_in_postgres(
    instance: dg.DagsterInstance, deployed_platform: DeployedPlatform
) -> None:
    night = deployed_platform.night.isoformat()
    runs = instance.get_runs(dg.RunsFilter(job_name="nightly_pipeline"))
    assert [run.status for run in runs] == [DagsterRunStatus.SUCCESS]
    assert runs[0].tags["dagster/partition"] == night
    run_id = runs[0].run_id

    # Straight from the tables, not through Dagster: the rows are where an operator's psql finds them.
    sql = deployed_platform.server.psql
    assert sql(DAGSTER_DB, f"select status, partition from runs where run_id = '{run_id}'") == f"SUCCESS|{night}"
    success, failure = DagsterEventType.RUN_SUCCESS.value, DagsterEventType.RUN_FAILURE.value
    ended = sql(DAGSTER_DB, f"select dagster_event_type from event_logs where run_id = '{run_id}' "
                            f"and dagster_event_type in ('{success}', '{failure}')")  # fmt: skip
    assert ended == success
    materialized = sql(
        DAGSTER_DB,
        "select distinct asset_key from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION' "
        f"and run_id = '{run_id}' and partition = '{night}'",
    ).splitlines()
    selected, daily = _nightly_asset_keys()
    materialized_keys = {dg.AssetKey.from_db_string(key) for key in materialized}
    assert materialized_keys <= selected
    # End to end: every daily asset of the job, from the raw tables to the scores and the drift report.
    assert daily <= materialized_keys, f"daily assets of the night not materialized: {daily - materialized_keys}"
    assert {dg.AssetKey(["raw", "customers"]), dg.AssetKey(["scoring", "batch_scores"]),
            dg.AssetKey(["monitoring", "drift_report"])} <= materialized_keys  # fmt: skip
    checks = sql(DAGSTER_DB, "select check_name, execution_status from asset_check_executions "
                             f"where run_id = '{run_id}'").splitlines()  # fmt: skip
    statuses = dict(line.split("|") for line in checks)
    assert statuses["quarantine_share_below_threshold"] == "SUCCEEDED"
    assert statuses.get("drift_share_below_threshold") in {"SUCCEEDED", "FAILED"}  # evaluated, whichever way


def test_the_champion_was_trained_and_promoted_by_a_dagster_run_on_postgres(
    instance: dg.DagsterInstance, deployed_platform: DeployedPlatform
) -> None:
    champion = instance.get_latest_materialization_event(dg.AssetKey(["ml", "champion_model"]))
    assert champion is not None and champion.run_id
    run = instance.get_run_by_id(champion.run_id)
    assert run is not None and run.status == DagsterRunStatus.SUCCESS
    sql = deployed_platform.server.psql
    assert sql(DAGSTER_DB, f"select status from runs where run_id = '{champion.run_id}'") == "SUCCESS"
    # The MLflow run that trained it names that Dagster run (lineage both ways).
    assert champion.run_id in sql(MLFLOW_DB, "select value from tags where key = 'dagster.run_id'").split()


def test_mlflow_keeps_experiments_runs_and_registry_in_postgres(deployed_platform: DeployedPlatform) -> None:
    settings_env = deployed_platform.env
    assert settings_env["PLATFORM_MLFLOW_TRACKING_URI"].startswith("postgresql+psycopg2://")
    sql = deployed_platform.server.psql
    experiment = "churn_model"  # the settings' default experiment and registered model name
    assert sql(MLFLOW_DB, f"select count(*) from experiments where name = '{experiment}'") == "1"
    finished = int(sql(MLFLOW_DB, "select count(*) from runs r join experiments e using (experiment_id) "
                                  f"where e.name = '{experiment}' and r.status = 'FINISHED'"))  # fmt: skip
    assert finished >= 1
    assert int(sql(MLFLOW_DB, "select count(*) from metrics where key = 'roc_auc'")) >= 1
    aliases = sql(MLFLOW_DB, f"select alias from registered_model_aliases where name = '{experiment}'").split()
    assert "champion" in aliases
    # Two databases, as in docker-compose: MLflow's tables are not in Dagster's, and the other way round.
    assert sql(DAGSTER_DB, "select count(*) from information_schema.tables where table_name = 'experiments'") == "0"
    assert sql(MLFLOW_DB, "select count(*) from information_schema.tables where table_name = 'event_logs'") == "0"
