"""Where a raw table's rows come from: the problem's own simulator, or the file a user drops in the landing folder.

A problem may bring a simulator: ``simulator.py`` in its folder, exposing ``TABLES``, a mapping from each raw
table's name to a function ``(Simulation, date) -> DataFrame`` of that day's rows. With ``PLATFORM_SOURCE=simulator``
the raw assets call it; a problem without one runs on landing files only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from types import ModuleType

import pandas as pd

from dagster_project.defs.ingestion.landing import read_landing_file
from dagster_project.defs.ingestion.schemas import AbsentDay, TableSpec
from dagster_project.problem import DeclarationError
from dagster_project.resources import RawSourceResource
from dagster_project.settings import REPO_ROOT, Simulation, Source

SIMULATOR_FILE = "simulator.py"
SimulatedTable = Callable[[Simulation, dt.date], pd.DataFrame]


def _import_file(path: Path) -> ModuleType:
    """A module from its file, under a name of its own (registered first: dataclasses look their module up)."""
    name = f"problem_simulator_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None  # a .py file always has a spec
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@cache
def _simulator_module(path: Path) -> ModuleType:
    # Inside the repository the simulator is imported by its module name (examples.subscription.simulator), so that
    # the platform and the tests share one module object: one population cache, functions that pickle.
    if path.is_relative_to(REPO_ROOT):
        dotted = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        try:
            return importlib.import_module(dotted)
        except ModuleNotFoundError as error:
            # The repository root is not on the import path (a process started elsewhere): read the file. A module
            # the simulator imports that is missing is an error of its own.
            if error.name is None or not f"{dotted}.".startswith(f"{error.name}."):
                raise
    return _import_file(path)


def simulator_tables(problem_dir: Path, tables: Iterable[str]) -> Mapping[str, SimulatedTable]:
    """The problem's simulator (its ``TABLES``), which must make every one of ``tables``."""
    path = problem_dir / SIMULATOR_FILE
    if not path.is_file():
        raise DeclarationError(
            f"PLATFORM_SOURCE={Source.simulator.value}, but the problem {problem_dir} has no {SIMULATOR_FILE}: "
            f"add one exposing TABLES, or load landing files (PLATFORM_SOURCE={Source.landing.value})"
        )
    made = getattr(_simulator_module(path), "TABLES", None)
    if not isinstance(made, Mapping):
        raise DeclarationError(f"{path}: exposes no TABLES, the mapping of each raw table to the function making it")
    missing = [name for name in tables if name not in made]
    if missing:
        raise DeclarationError(f"{path}: TABLES makes no {', '.join(missing)}, declared as raw table(s)")
    return made


def load_raw(source: RawSourceResource, spec: TableSpec, date: dt.date) -> tuple[pd.DataFrame, str]:
    """The day's rows of the table ``spec`` as they arrive, and a description of where they came from."""
    if source.kind is Source.simulator:
        cfg = source.simulator
        make = simulator_tables(Path(source.problem_dir), [spec.name])[spec.name]
        return make(cfg, date), f"simulator(seed={cfg.seed}, customers={cfg.customers}, scenario={cfg.scenario.value})"
    try:
        path = source.landing_file(spec.name, date)
    except FileNotFoundError as absent:
        if spec.absent_day is not AbsentDay.empty:
            raise
        # Text columns, as a header-only CSV file would give: validation reads them as any landing file.
        empty = pd.DataFrame({name: pd.Series(dtype=object) for name in spec.columns})
        return empty, f"{absent}: no rows (the table declares absent_day: {AbsentDay.empty.value})"
    return read_landing_file(path), str(path)
