"""The real definitions load, in process and through the Dagster CLI that `dagster dev` uses."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from dagster_project.settings import REPO_ROOT


def test_definitions_load_with_every_raw_table_and_the_nightly_job() -> None:
    from dagster_project.definitions import defs as load_definitions

    defs = load_definitions()

    keys = {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
    assert {"raw/customers", "raw/activity_events", "raw/cancellations"} <= keys
    job = defs.resolve_job_def("nightly_pipeline")
    assert job.partitions_def is not None
    # Every resource has its values from settings: a run needs no config.
    dg.validate_run_config(job, {})  # raises if any config were missing


def test_workspace_loads_without_errors_or_warnings(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "PLATFORM_DATA_ROOT": str(tmp_path / "data")}
    dagster = str(Path(sys.executable).parent / "dagster")
    completed = subprocess.run(
        [dagster, "definitions", "validate", "-w", str(REPO_ROOT / "workspace.yaml")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "All code locations passed validation" in output
    # The only warning allowed is the CLI's own notice that `dg check defs` supersedes this command.
    warnings = [line for line in output.splitlines() if "Warning" in line and "SupersessionWarning" not in line]
    assert not warnings, warnings
