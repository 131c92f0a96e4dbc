"""A raw day and its quarantine are one commit: a process killed between the two writes counts no row twice.

A day is ingested, then corrected at the source (a quarantined row fixed), and re-ingested by a run whose process is
killed with SIGKILL at a write point (``dagster_project.faults``). Whatever the point, the pair that readers see is
the old one or the new one, never the new quarantine beside the old rows; the rerun makes it the new one.
"""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from dagster_project import faults
from dagster_project import lake as lake_layout
from dagster_project.settings import Settings

DAY = "2025-01-03"
HEADER = (
    "customer_id,event_date,logins,sessions,minutes_active,purchases,purchase_amount,support_tickets,payment_failures\n"
)
FIRST = HEADER + "A1,2025-01-03,2,3,40.0,0,0,0,0\nA2,2025-01-03,1,1,12.5,1,-5.0,0,0\n"  # A2: a negative amount
CORRECTED = HEADER + "A1,2025-01-03,2,3,40.0,0,0,0,0\nA2,2025-01-03,1,1,12.5,1,5.0,0,0\n"
INGEST = """
import sys

import dagster as dg
from dagster_project import asset_keys
from dagster_project.defs import ingestion
from dagster_project.resources import build_resources
from dagster_project.settings import get_settings

settings = get_settings()
result = dg.materialize(
    list(ingestion.build_defs(settings).assets),
    selection=[asset_keys.raw_table("activity_events")],
    partition_key=sys.argv[1],
    resources=build_resources(settings),
)
assert result.success
"""


def _ingest(content: str, landing: Path, kill_at: str | None = None) -> int:
    """Land ``content`` as the day's activity file and ingest it in a process of its own; returns its exit code."""
    path = landing / "activity_events" / f"{DAY}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    env = {**os.environ, "PLATFORM_SOURCE": "landing", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop(faults.KILL_AT_VARIABLE, None)
    if kill_at:
        env[faults.KILL_AT_VARIABLE] = kill_at
    done = subprocess.run([sys.executable, "-c", INGEST, DAY], env=env, capture_output=True, text=True)
    assert done.returncode in (0, -signal.SIGKILL), done.stderr[-3000:]
    return done.returncode


def _pair(settings: Settings) -> tuple[list[str], list[str]]:
    """The day as readers see it: the customer ids kept, and those quarantined (from each row as it arrived)."""
    day = dt.date.fromisoformat(DAY)
    kept = lake_layout.partition_path(settings.lake_root, lake_layout.RAW, "activity_events", day)
    quarantined = lake_layout.read_quarantine(settings.lake_root, "activity_events", day)
    assert quarantined is not None
    return (
        sorted(pq.read_table(kept).column("customer_id").to_pylist()),
        sorted(json.loads(record)["customer_id"] for record in quarantined.column("record").to_pylist()),
    )


def _quarantine_files(settings: Settings) -> list[Path]:
    folder = Path(settings.lake_root) / lake_layout.QUARANTINE / "activity_events" / f"date={DAY}"
    return sorted(folder.glob("*.parquet"))


def test_a_kill_between_the_raw_day_and_its_quarantine_counts_no_row_twice(settings: Settings) -> None:
    """Killed after the new quarantine and before the raw file that commits it: readers still see the old pair. (The
    other points, and the rerun's tables against an uninterrupted run's, are in tests/test_fault_injection.py.)"""
    landing = Path(settings.landing_root)
    assert _ingest(FIRST, landing) == 0
    kept, quarantined = _pair(settings)
    assert (kept, quarantined) == (["A1"], ["A2"])  # A2's negative amount

    # The corrected day, re-ingested by a process killed between the two writes.
    assert _ingest(CORRECTED, landing, kill_at=faults.QUARANTINE) == -signal.SIGKILL
    assert _pair(settings) == (["A1"], ["A2"]), "the old pair, whole"
    assert len(_quarantine_files(settings)) == 2, "the new quarantine, which no raw file names yet"

    assert _ingest(CORRECTED, landing) == 0
    assert _pair(settings) == (["A1", "A2"], [])
    assert len(_quarantine_files(settings)) == 1, "the files no raw partition names are removed"
