"""The Dagster instance of the embedded default: run history, event logs and schedules under the data root."""

import os
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClassData

from dagster_project import event_log
from dagster_project.settings import Settings, get_settings

# Telemetry off: the embedded default makes no outside connection; storage defaults to SQLite in this folder.
# Every pool admits one step at a time: `duckdb_warehouse` because DuckDB allows one writer per file,
# `offline_store_writer` because Delta on an object store takes one writing Spark driver per table at a time,
# `model_registry` so that two runs never move the champion alias at once. Run monitoring (in `make ui`'s daemon) fails
# a run whose worker never started and frees the slots a finished run still holds; a worker that died mid-run is
# found by the `fail_abandoned_runs` sensor (defs/automation/abandoned_runs.py).
INSTANCE_CONFIG = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  free_slots_after_run_end_seconds: 60
"""


def local_instance(settings: Settings | None = None, fast_event_log: bool = False) -> dg.DagsterInstance:
    """The instance at ``settings.dagster_home``, the same one ``make ui`` (``dagster dev``) opens afterwards.

    ``fast_event_log``: write the event log through ``event_log.SqliteEventLogStorage`` (the same files, several
    times faster, but not followed live by the UI: see there). Only for the embedded SQLite storage; an instance
    configured otherwise (Postgres) is opened as configured."""
    home = Path((settings or get_settings()).dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_CONFIG)
    os.environ["DAGSTER_HOME"] = str(home)
    ref = InstanceRef.from_dir(str(home))
    embedded = ref.storage_data is not None and ref.storage_data.class_name == DagsterSqliteStorage.__name__
    if fast_event_log and embedded and ref.event_storage_data is not None:
        # The storages one by one (Dagster's legacy form of the same SQLite layout), the event log replaced.
        ref = ref._replace(
            storage_data=None,
            event_storage_data=ConfigurableClassData(
                event_log.__name__, event_log.SqliteEventLogStorage.__name__, ref.event_storage_data.config_yaml
            ),
        )
    return dg.DagsterInstance.from_ref(ref)
