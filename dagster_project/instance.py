"""The Dagster instance of the embedded default: run history, event logs and schedules under the data root."""

import os
from pathlib import Path

import dagster as dg

from dagster_project.settings import Settings, get_settings


def local_instance(settings: Settings | None = None) -> dg.DagsterInstance:
    """The instance at ``settings.dagster_home``, the same one ``make ui`` (``dagster dev``) opens afterwards."""
    home = Path((settings or get_settings()).dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        # Telemetry off: the embedded default makes no outside connection. Storage defaults to SQLite here.
        config.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.from_config(str(home))
