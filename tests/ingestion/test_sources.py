"""Where raw rows come from: the problem's own simulator (imported by module name inside the repository, from its
file outside it), and a landing file that may be absent on a quiet day."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dagster_project.defs.ingestion.sources import simulator_tables
from dagster_project.problem import DeclarationError
from dagster_project.settings import Settings, Simulation
from examples.subscription import simulator

SUBSCRIPTION_TABLES = ("customers", "activity_events", "cancellations")


def test_the_example_s_simulator_is_the_module_the_tests_import() -> None:
    # One module object: its population cache and its functions are the ones tests clear and call.
    assert simulator_tables(Settings().problem_dir, SUBSCRIPTION_TABLES) is simulator.TABLES


def test_a_simulator_outside_the_repository_is_read_from_its_file(tmp_path: Path) -> None:
    (tmp_path / "simulator.py").write_text(
        "import pandas as pd\n"
        "from dataclasses import dataclass\n\n\n"
        "@dataclass\n"
        "class Reading:\n"
        "    value: int\n\n\n"
        "def readings(cfg, date):\n"
        "    return pd.DataFrame({'day': [date], 'value': [Reading(cfg.seed).value]})\n\n\n"
        "TABLES = {'readings': readings}\n"
    )
    tables = simulator_tables(tmp_path, ["readings"])
    frame = tables["readings"](Simulation(seed=7), dt.date(2025, 1, 2))
    assert frame.to_dict("records") == [{"day": dt.date(2025, 1, 2), "value": 7}]


def test_a_problem_without_a_simulator_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DeclarationError, match=r"has no simulator\.py: add one exposing TABLES, or .*=landing"):
        simulator_tables(tmp_path, ["readings"])


def test_a_simulator_missing_a_declared_table_names_it(tmp_path: Path) -> None:
    (tmp_path / "simulator.py").write_text("TABLES = {}\n")
    with pytest.raises(DeclarationError, match=r"simulator\.py: TABLES makes no readings, declared as raw table"):
        simulator_tables(tmp_path, ["readings"])
