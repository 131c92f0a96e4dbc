"""Helpers of the feature tests: raw partitions written straight into a test's lake, dbt run from its CLI, the
warehouse read back. Everything happens under temporary data roots: a test that changes a shared, prepared root
(a session's or a module's) works on its own copy of it (``copy_data_root``)."""

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from dagster_project import lake
from dagster_project.defs.ingestion.schemas import TableSpec, table_specs
from dagster_project.problem import load_problem
from dagster_project.resources import DBT_EXECUTABLE
from dagster_project.settings import DBT_PROJECT_DIR, REPO_ROOT, Settings, Simulation, SimulatorSettings, Thresholds
from examples.subscription import simulator

RAW_TABLE_NAMES = ("customers", "activity_events", "cancellations")


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def days(first: str, last: str) -> list[dt.date]:
    start, end = day(first), day(last)
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


@cache
def raw_tables() -> dict[str, TableSpec]:
    """The subscription example's raw tables, as its declaration makes them."""
    return table_specs(load_problem(Settings()).raw_tables)


def write_raw(lake_root: Path, table: str, date: dt.date, rows: Iterable[Mapping[str, Any]]) -> Path:
    """One raw partition as the ingestion assets store it (same Arrow schema), bypassing pandera on purpose."""
    arrow = pa.Table.from_pylist(list(rows), schema=raw_tables()[table].arrow_schema())
    path = lake.partition_path(lake_root, "raw", table, date)
    lake.write_partition_atomically(arrow, path)
    return path


def write_simulated_raw(lake_root: Path, cfg: Simulation, dates: Iterable[dt.date]) -> None:
    """The simulator's days, written as raw partitions (valid data: no need to validate it again)."""
    for date in dates:
        for table in RAW_TABLE_NAMES:
            frame = simulator.TABLES[table](cfg, date)
            write_raw(lake_root, table, date, frame.to_dict("records"))


def run_dbt(
    settings: Settings, *args: str, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The dbt CLI exactly as a person runs it from the repository root. Only the data root is set (dbt derives
    the warehouse and lake paths from it, as the settings do), plus ``env``; the invocation's artifacts go under
    the data root, never into dbt_project/target."""
    artifacts = settings.data_root / "dbt_cli"
    command = [
        DBT_EXECUTABLE,
        *args,
        "--project-dir",
        os.path.relpath(DBT_PROJECT_DIR, REPO_ROOT),
        "--profiles-dir",
        os.path.relpath(DBT_PROJECT_DIR, REPO_ROOT),
        "--target-path",
        str(artifacts / "target"),
        "--log-path",
        str(artifacts / "logs"),
    ]
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")},
        "PLATFORM_DATA_ROOT": str(settings.data_root),
        **(env or {}),
    }
    completed = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True)
    if check and completed.returncode != 0:
        raise AssertionError(f"dbt {' '.join(args)} failed:\n{completed.stdout[-6000:]}\n{completed.stderr[-3000:]}")
    return completed


def query(settings: Settings, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
        return connection.execute(sql, params or {}).fetchall()


def query_dicts(settings: Settings, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
        cursor = connection.execute(sql, params or {})
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def copy_data_root(source: Path, target: Path) -> None:
    """A copy of a prepared data root (lake and warehouse), for a test that changes it."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("dbt", "dbt_cli"))


SIMULATED_DAYS = days("2025-01-01", "2025-01-05")
HORIZON_DAYS = 2  # short, so that labels mature within the few simulated days
CLI_ENV = {"PLATFORM_THRESHOLDS__CHURN_HORIZON_DAYS": str(HORIZON_DAYS)}


@dataclass(frozen=True)
class SimulatedBase:
    settings: Settings  # of the base's own data root: copy it (feature_support.copy_data_root) before changing it
    build_output: str
    docs_output: str


def simulated_settings(data_root: Path) -> Settings:
    return Settings(
        data_root=data_root,
        simulator=SimulatorSettings(customers=120),
        thresholds=Thresholds(churn_horizon_days=HORIZON_DAYS),
    )
