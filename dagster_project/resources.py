"""Dagster resources, built from the one settings object.

Each resource's defaults come from ``Settings``, so the definitions load with no run config and the UI's
launchpad shows the values in force; a run may still override them.
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa

from dagster_project import lake
from dagster_project.settings import Scenario, Settings, SimulatorSettings, Source, get_settings


class LakeResource(dg.ConfigurableResource):
    """The data lake: Parquet partitions of the raw and quarantine layers (Delta tables live beside them)."""

    root: str

    @property
    def root_path(self) -> Path:
        return Path(self.root)

    def partition_path(self, layer: str, table: str, date: dt.date) -> Path:
        return lake.partition_path(self.root_path, layer, table, date)

    def write_partition(self, layer: str, table: str, date: dt.date, frame: pd.DataFrame, schema: pa.Schema) -> Path:
        path = self.partition_path(layer, table, date)
        arrow = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        lake.write_partition_atomically(arrow, path)
        return path

    def read_partition(self, layer: str, table: str, date: dt.date) -> pd.DataFrame:
        return pd.read_parquet(self.partition_path(layer, table, date))


class RawSourceResource(dg.ConfigurableResource):
    """Where raw tables come from: the built-in simulator or files in the landing folder."""

    kind: Source
    landing_root: str
    seed: int
    customers: int
    start_date: str
    scenario: Scenario
    drift_start: str

    @property
    def simulator(self) -> SimulatorSettings:
        return SimulatorSettings(
            seed=self.seed,
            customers=self.customers,
            start_date=dt.date.fromisoformat(self.start_date),
            scenario=self.scenario,
            drift_start=dt.date.fromisoformat(self.drift_start),
        )

    def landing_file(self, table: str, date: dt.date) -> Path:
        """The one file a user drops for ``table`` on ``date``: ``<landing>/<table>/<date>.csv`` or ``.parquet``."""
        folder = Path(self.landing_root) / table
        found = [p for p in (folder / f"{date}.csv", folder / f"{date}.parquet") if p.exists()]
        if not found:
            raise FileNotFoundError(
                f"no landing file for table {table} on {date}: expected {folder / f'{date}.csv'} "
                f"or {folder / f'{date}.parquet'}"
            )
        if len(found) > 1:
            raise FileExistsError(f"two landing files for table {table} on {date}: {found[0]} and {found[1]}; keep one")
        return found[0]


def build_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of every code location and test, all derived from ``settings``."""
    s = settings or get_settings()
    sim = s.simulator
    return {
        "lake": LakeResource(root=str(s.lake_root)),
        "raw_source": RawSourceResource(
            kind=s.source,
            landing_root=str(s.landing_root),
            seed=sim.seed,
            customers=sim.customers,
            start_date=sim.start_date.isoformat(),
            scenario=sim.scenario,
            drift_start=sim.drift_start.isoformat(),
        ),
    }
