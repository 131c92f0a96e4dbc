"""Benchmark: the main command's story, timed, with where its seconds go.

    .venv/bin/python bench/story.py [--days 120] [--data-root /tmp/bench_story] [--reuse]

Runs ``python -m dagster_project.cli run --days N`` from an empty data root (``--reuse`` reads the instance a
previous run left under ``--data-root`` instead) and reads the breakdown back from the Dagster instance the story
recorded: wall time per phase (the history's ranged runs, the nights, the retrains) and, within each, the seconds
of each step. The story's own total is the command's wall time after set-up (``make setup manifest jars``, which
this script does not time). Target: the 120-day story in at most 5 minutes on the 2-core machine.
"""

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

# The tags the story's runs carry (dagster_project.replay, dagster_project.story): read, not imported, so that the
# script measures a checkout without loading its definitions.
RANGE_PURPOSE_TAG = "platform/range_purpose"
SCHEDULE_TAG = "dagster/schedule_name"


def phase_of(job_name: str, tags: dict[str, str]) -> str:
    if RANGE_PURPOSE_TAG in tags:
        return "history (ranged data runs)"
    if job_name == "retrain":
        return "first model (bootstrap)" if tags.get("retrain/reason") == "bootstrap" else "retrains (sensor)"
    if SCHEDULE_TAG in tags:
        return "nights (scores, drift, performance)"
    return f"other ({job_name})"


def breakdown(dagster_home: Path) -> str:
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(dagster_home)
    instance = dg.DagsterInstance.get()
    phases: dict[str, dict[str, float]] = collections.defaultdict(lambda: collections.defaultdict(float))
    runs: collections.Counter[str] = collections.Counter()
    for record in instance.get_run_records():
        run = record.dagster_run
        phase = phase_of(run.job_name, dict(run.tags))
        runs[phase] += 1
        phases[phase]["(run wall)"] += (record.end_time or 0) - (record.start_time or 0)
        for step in instance.get_run_step_stats(run.run_id):
            if step.start_time is not None and step.end_time is not None:  # a skipped step has no times
                phases[phase][step.step_key] += step.end_time - step.start_time
    lines = []
    for phase, steps in sorted(phases.items(), key=lambda item: -item[1]["(run wall)"]):
        lines.append(f"{phase}: {runs[phase]} runs, {steps['(run wall)']:.1f} s")
        for step, seconds in sorted(steps.items(), key=lambda item: -item[1]):
            if step != "(run wall)" and seconds >= 0.5:
                lines.append(f"    {step:<42} {seconds:7.1f} s")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--data-root", type=Path, default=Path("/tmp/bench_story"))
    parser.add_argument("--reuse", action="store_true", help="read the instance of an earlier run; run nothing")
    args = parser.parse_args()
    root = args.data_root.resolve()
    if not args.reuse:
        if root.exists():
            import shutil

            shutil.rmtree(root)
        env = {**os.environ, "PLATFORM_DATA_ROOT": str(root)}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "dagster_project.cli", "run", "--days", str(args.days)], env=env, check=False
        )
        print(f"\nthe story of {args.days} days: {time.monotonic() - started:.0f} s (exit {done.returncode})")
    print(breakdown(root / "dagster"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
