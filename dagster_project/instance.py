"""The Dagster instance of the embedded default: run history, event logs and schedules under the data root."""

import os
from pathlib import Path

import dagster as dg

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


def local_instance(settings: Settings | None = None) -> dg.DagsterInstance:
    """The instance at ``settings.dagster_home``, the same one ``make ui`` (``dagster dev``) opens afterwards."""
    home = Path((settings or get_settings()).dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_CONFIG)
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.from_config(str(home))
