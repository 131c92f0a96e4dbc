"""Fault injection: a night and a retrain killed with SIGKILL at each of their write points, then rerun, leave the
tables an uninterrupted run leaves, and nothing stuck.

From one history (a small churn world's snapshots, labels and the night's export, and a first champion), two copies:

* the reference runs the night, then a retrain, uninterrupted;
* a faulted copy runs the night in a process killed at its first write point, reruns it in one killed at the
  next, and so on (each rerun passes the earlier points and dies at the next), then once to the end; a second
  faulted copy, taken after the reference's night, does the same with the retrain, side by side with the first.
  The point is the process's own SIGKILL (``dagster_project.faults``): no handler, no ``finally``.

Then the offline store's day, the training set, the scores, the drift verdict and the realized performance equal
the reference's; every killed run is failed by the watchdog, whose planned checks resolve, and no pool slot is held.
A day of the raw and features layers goes through the same, killed at the quarantine, the raw file, dbt's build
and the export: its raw partitions, quarantines, exports and warehouse rows equal the reference's.
"""

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import duckdb
import fault_night
import pandas as pd
import pytest
from churn_world import START, days
from deltalake import DeltaTable

from dagster_project import faults, story
from dagster_project import lake as lake_layout
from dagster_project.defs.automation.abandoned_runs import UNFINISHED, fail_abandoned_runs
from dagster_project.defs.scoring import scores as scoring
from dagster_project.instance import local_instance
from dagster_project.resources import MlflowResource
from dagster_project.settings import Settings, get_settings

PROCESS_TIMEOUT_SECONDS = 600  # a rerun waiting for ever (a dead run's pool slot) fails the test instead
FEATURE_POINTS = [faults.QUARANTINE, faults.RAW, faults.DBT, faults.EXPORT]
FEATURE_HISTORY_DAYS = 5
NIGHT_POINTS = [faults.SNAPSHOT, faults.SCORES, faults.DRIFT_REPORT]
RETRAIN_POINTS = [faults.TRAINING_SET, faults.ALIAS]


def _use_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PLATFORM_DATA_ROOT", str(root))
    monkeypatch.setenv("PLATFORM_THRESHOLDS__CHURN_HORIZON_DAYS", str(fault_night.HORIZON_DAYS))
    get_settings.cache_clear()
    return get_settings()


def _history(root: Path, template_db: Path, monkeypatch: pytest.MonkeyPatch) -> dt.date:
    """The world's history up to the night, and its first champion (a retrain run); returns the night."""
    settings = _use_root(root, monkeypatch)
    night = story.first_training_day(settings)
    world = fault_night.world(drift_start=night)
    world.write_feature_snapshots(settings.lake_root, days(START, (night - START).days))
    matured = START + dt.timedelta(days=fault_night.HORIZON_DAYS)
    world.write_labels(settings.lake_root, days(matured, (night - matured).days + 1))
    world.write_feature_exports(settings.lake_root, [night])
    db = Path(MlflowResource.from_settings(settings).tracking_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template_db, db)
    assert fault_night.run("retrain", night), "the first champion"
    return night


def _killed_then_whole(part: str, night: dt.date, points: list[str], root: Path) -> list[int]:
    """Run ``part`` on the data root ``root`` in a process killed at each point in turn, then once to the end;
    returns the exit codes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PLATFORM_DATA_ROOT": str(root)}
    codes = []
    for point in [*points, None]:
        env.pop(faults.KILL_AT_VARIABLE, None)
        if point:
            env[faults.KILL_AT_VARIABLE] = point
        script = [sys.executable, fault_night.__file__, part, night.isoformat()]
        done = subprocess.run(script, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_SECONDS)
        assert done.returncode in (0, -signal.SIGKILL), f"{part} at {point}: {done.stderr[-3000:]}"
        codes.append(done.returncode)
    return codes


def _tables(settings: Settings, night: dt.date) -> dict[str, object]:
    """What the night and the retrain left: the tables (without their timestamps), and the drift verdict."""
    store = lake_layout.offline_store(settings.lake_root)
    contract = fault_night.world(night).contract
    snapshot = DeltaTable(str(store.feature_snapshots)).to_pandas(filters=[("snapshot_date", "=", night)])
    training = DeltaTable(str(store.training_set)).to_pandas()
    scores = scoring.read_scores(settings.lake_root, night, contract).drop(columns=["scored_at", "model_version"])
    performance = pd.read_parquet(lake_layout.model_performance_path(settings.lake_root, night))
    instance = local_instance(settings)
    drift = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey(["monitoring", "drift_report"]), "drift_share_below_threshold")
    )

    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(list(frame.columns)).reset_index(drop=True)

    return {
        "snapshot": ordered(snapshot),
        "training_set": ordered(training),
        "scores": ordered(scores),
        "performance": performance,
        "drift_passed": drift.event.dagster_event.event_specific_data.passed if drift and drift.event else None,
        "drift_report": lake_layout.drift_report_path(settings.lake_root, night).exists(),
    }


@pytest.mark.spark
@pytest.mark.slow
def test_a_night_and_a_retrain_killed_at_every_write_point_rerun_to_the_same_tables(
    tmp_path: Path, mlflow_template_db: Path, monkeypatch: pytest.MonkeyPatch, spark: object
) -> None:
    base = tmp_path / "base"
    night = _history(base, mlflow_template_db, monkeypatch)
    shutil.copytree(base, tmp_path / "reference")
    shutil.copytree(base, tmp_path / "faulted_night")

    # The reference: the night, then the retrain. The retrain's faulted copy starts where the night left it.
    reference = _use_root(tmp_path / "reference", monkeypatch)
    assert fault_night.run("night", night)
    shutil.copytree(tmp_path / "reference", tmp_path / "faulted_retrain")
    assert fault_night.run("retrain", night)
    expected = _tables(reference, night)

    # The two faulted chains are independent (each on its own copy): they run side by side.
    with ThreadPoolExecutor(max_workers=2) as pool:
        nights = pool.submit(_killed_then_whole, "night", night, NIGHT_POINTS, tmp_path / "faulted_night")
        retrains = pool.submit(_killed_then_whole, "retrain", night, RETRAIN_POINTS, tmp_path / "faulted_retrain")
        assert nights.result() == [-signal.SIGKILL] * len(NIGHT_POINTS) + [0]
        assert retrains.result() == [-signal.SIGKILL] * len(RETRAIN_POINTS) + [0]

    for folder, points, compared in (
        ("faulted_night", NIGHT_POINTS, [name for name in expected if name != "training_set"]),
        ("faulted_retrain", RETRAIN_POINTS, list(expected)),
    ):
        faulted = _use_root(tmp_path / folder, monkeypatch)
        _nothing_stuck(faulted, len(points))
        found = _tables(faulted, night)
        for name in compared:
            if isinstance(expected[name], pd.DataFrame):
                pd.testing.assert_frame_equal(found[name], expected[name], obj=f"{folder}: {name}")
            else:
                assert found[name] == expected[name], f"{folder}: {name}"


def _nothing_stuck(settings: Settings, killed_runs: int) -> None:
    """Every killed run was failed (each rerun first fails the runs whose process died, as the watchdog sensor
    does), so its checks resolve; no run is unfinished, no slot held."""
    instance = local_instance(settings)
    assert fail_abandoned_runs(instance) == []
    failed = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    assert len(failed) == killed_runs, [r.run_id for r in failed]
    assert not instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED))
    for pool in instance.event_log_storage.get_concurrency_keys():
        assert not instance.event_log_storage.get_concurrency_info(pool).claimed_slots, pool


def _feature_tables(settings: Settings, day: dt.date) -> dict[str, object]:
    """The day's raw partitions with their committed quarantines, its exports, and its rows in the warehouse."""
    lake = Path(settings.lake_root)
    found: dict[str, object] = {}
    for folder in sorted((lake / lake_layout.RAW).iterdir()):
        raw = pd.read_parquet(lake_layout.partition_path(lake, lake_layout.RAW, folder.name, day))
        quarantined = lake_layout.read_quarantine(lake, folder.name, day)
        found[f"raw/{folder.name}"] = raw
        found[f"quarantine/{folder.name}"] = quarantined.to_pandas().drop(columns=["source"])  # names the data root
    for folder in sorted((lake / lake_layout.FEATURES).iterdir()):
        path = lake_layout.partition_path(lake, lake_layout.FEATURES, folder.name, day)
        if path.exists():
            found[f"export/{folder.name}"] = pd.read_parquet(path)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as warehouse:
        found["warehouse/customer_features"] = warehouse.execute(
            "select * from marts.customer_features where snapshot_date = ? order by all", [day]
        ).df()
    return found


@pytest.mark.slow
def test_a_day_of_raw_tables_and_features_killed_at_every_write_point_reruns_to_the_same_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_SIMULATOR__CUSTOMERS", "150")
    settings = _use_root(tmp_path / "base", monkeypatch)
    history = days(settings.history_start, FEATURE_HISTORY_DAYS)
    assert fault_night.raw_and_features(history[0], history[-1]), "the history, in one ranged run"
    day = history[-1] + dt.timedelta(days=1)
    shutil.copytree(tmp_path / "base", tmp_path / "reference")
    shutil.copytree(tmp_path / "base", tmp_path / "faulted")

    reference = _use_root(tmp_path / "reference", monkeypatch)
    assert fault_night.raw_and_features(day)
    expected = _feature_tables(reference, day)

    faulted = _use_root(tmp_path / "faulted", monkeypatch)
    codes = _killed_then_whole("features", day, FEATURE_POINTS, tmp_path / "faulted")
    assert codes == [-signal.SIGKILL] * len(FEATURE_POINTS) + [0]
    _nothing_stuck(faulted, len(FEATURE_POINTS))
    found = _feature_tables(faulted, day)
    assert sorted(found) == sorted(expected)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(found[name], frame, obj=name)
