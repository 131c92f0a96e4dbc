"""The settings: one first day of history for every source, and a clear error for the variable it replaced."""

import datetime as dt

import pytest
from pydantic import ValidationError

from dagster_project.definitions import build_definitions
from dagster_project.settings import Settings


def test_the_first_day_of_history_starts_the_partitions_and_the_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_HISTORY_START", "2024-02-01")
    settings = Settings()
    assert settings.history_start == dt.date(2024, 2, 1) == settings.simulation.start_date
    defs = build_definitions(settings)
    job = defs.resolve_job_def("nightly_pipeline")
    assert job.partitions_def is not None and job.partitions_def.get_first_partition_key() == "2024-02-01"


def test_the_replaced_simulator_start_date_is_refused_naming_its_successor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_SIMULATOR__START_DATE", "2024-02-01")
    with pytest.raises(ValidationError, match="set PLATFORM_HISTORY_START instead"):
        Settings()
