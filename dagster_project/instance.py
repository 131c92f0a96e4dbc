"""The Dagster instance of the embedded default: run history, event logs and schedules under the data root."""

import os
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage import sqlite_storage
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage
from dagster._serdes import ConfigurableClassData

from dagster_project import event_log, pool_claims
from dagster_project.settings import Settings, get_settings

# Telemetry off: the embedded default makes no outside connection.
# Every pool admits one step at a time: `duckdb_warehouse` because DuckDB allows one writer per file,
# `offline_store_writer` because Delta on an object store takes one writing Spark driver per table at a time,
# `model_registry` so that two runs never move the champion alias at once. Run monitoring (in `make ui`'s daemon) fails
# a run whose worker never started and frees the slots a finished run still holds; a worker that died mid-run is
# found by the `fail_abandoned_runs` sensor (defs/automation/abandoned_runs.py).
# The storage is Dagster's SQLite storage (its default, under the home) with a pool's slots claimed one run at a time
# (pool_claims.py).
INSTANCE_CONFIG = """\
telemetry:
  enabled: false
storage:
  custom:
    module: dagster_project.pool_claims
    class: DagsterSqliteStorage
    config:
      base_dir:
        env: DAGSTER_HOME
concurrency:
  pools:
    default_limit: 1
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  free_slots_after_run_end_seconds: 60
"""
# The file as this project wrote it before its storage claimed pool slots one at a time (Dagster's storage, by
# default). A home holding exactly this gets the current file; one edited by hand is left as it is.
FORMER_INSTANCE_CONFIG = INSTANCE_CONFIG.replace(INSTANCE_CONFIG[INSTANCE_CONFIG.index("storage:") :
                                                 INSTANCE_CONFIG.index("concurrency:")], "")  # fmt: skip


def local_instance(settings: Settings | None = None, fast_event_log: bool = False) -> dg.DagsterInstance:
    """The instance at ``settings.dagster_home``, the same one ``make ui`` (``dagster dev``) opens afterwards.

    ``fast_event_log``: write the event log through ``event_log.SqliteEventLogStorage`` (the same files, several
    times faster, but not followed live by the UI: see there). Only for the embedded SQLite storage; an instance
    configured otherwise (Postgres) is opened as configured."""
    home = Path((settings or get_settings()).dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() == FORMER_INSTANCE_CONFIG:
        config.write_text(INSTANCE_CONFIG)
    os.environ["DAGSTER_HOME"] = str(home)
    ref = InstanceRef.from_dir(str(home))
    storage = ref.storage_data
    embedded = storage is not None and (storage.module_name, storage.class_name) in {
        (sqlite_storage.__name__, sqlite_storage.DagsterSqliteStorage.__name__),  # a home made before pool_claims
        (pool_claims.__name__, pool_claims.DagsterSqliteStorage.__name__),
    }
    if fast_event_log and embedded:
        # The storages one by one in the same SQLite layout under the home (Dagster's legacy form of it), the event
        # log replaced.
        def part(cls: type, folder: str) -> ConfigurableClassData:
            return ConfigurableClassData(cls.__module__, cls.__name__, yaml.dump({"base_dir": folder}))

        base = str(home)
        ref = ref._replace(
            storage_data=None,
            run_storage_data=part(SqliteRunStorage, sqlite_storage._runs_directory(base)),
            event_storage_data=part(event_log.SqliteEventLogStorage, sqlite_storage._event_logs_directory(base)),
            schedule_storage_data=part(SqliteScheduleStorage, sqlite_storage._schedule_directory(base)),
        )
    return dg.DagsterInstance.from_ref(ref)
