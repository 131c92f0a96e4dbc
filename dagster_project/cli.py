"""The main command: run the platform on the embedded default for a range of days, and open its UI.

    python -m dagster_project.cli run --days 30
    python -m dagster_project.cli ui

Each day is one real Dagster run of the ``nightly_pipeline`` job for that day's partition, recorded in the
instance under the data root, so ``make ui`` shows the history afterwards.
"""

import argparse
import datetime as dt
import os
import sys
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from dagster_project.instance import local_instance
from dagster_project.settings import REPO_ROOT, get_settings

# The progress bar speaks for the runs; their full logs are in the instance (`make ui`).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _days(start: dt.date, count: int) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(count)]


def run(days: int, start: dt.date | None) -> int:
    # Imported here so that `--help` answers at once.
    from dagster_project.definitions import defs

    settings = get_settings()
    first = start or settings.partitions_start
    instance = local_instance(settings)
    job = defs.resolve_job_def("nightly_pipeline")
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    failed: list[str] = []
    print(f"data root: {settings.data_root}")
    print(f"source: {settings.source.value}, scenario: {settings.simulator.scenario.value}")
    for day in tqdm(_days(first, days), desc="nightly runs", unit="day"):
        result = job.execute_in_process(
            partition_key=day.isoformat(), instance=instance, raise_on_error=False, run_config=QUIET
        )
        if not result.success:
            failed.append(day.isoformat())
            continue
        for event in result.get_asset_materialization_events():
            metadata = event.materialization.metadata
            table = event.asset_key.to_user_string()
            for field in ("rows_in", "rows_kept", "rows_quarantined"):
                if field in metadata:
                    totals[table][field] += int(metadata[field].value)
    print(f"\n{days - len(failed)} of {days} days ran ({first} to {first + dt.timedelta(days=days - 1)})")
    for table, counts in sorted(totals.items()):
        print(
            f"  {table:<28} in {counts['rows_in']:>10,}  kept {counts['rows_kept']:>10,}"
            f"  quarantined {counts['rows_quarantined']:>7,}"
        )
    if failed:
        print(f"failed days: {', '.join(failed)} (see `make ui`, Runs)", file=sys.stderr)
        return 1
    print(f"Run history is in {settings.dagster_home}: `make ui` opens it.")
    return 0


def ui(port: int) -> int:
    """``dagster dev`` on the instance the runs were recorded in, bound to the loopback interface."""
    local_instance(get_settings())  # sets DAGSTER_HOME and writes its dagster.yaml on first use
    dagster = str(Path(sys.executable).parent / "dagster")
    command = [dagster, "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "--host", "127.0.0.1", "--port", str(port)]
    os.execvp(command[0], command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dagster_project.cli", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run the nightly pipeline for a range of days")
    run_parser.add_argument("--days", type=int, default=30, help="how many days to run (default 30)")
    run_parser.add_argument("--start", type=dt.date.fromisoformat, help="first day (default: the partitions' start)")
    ui_parser = sub.add_parser("ui", help="open the Dagster UI (dagster dev) on the recorded history")
    ui_parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    if args.command == "ui":
        return ui(args.port)
    return run(args.days, args.start)


if __name__ == "__main__":
    sys.exit(main())
