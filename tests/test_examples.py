"""Each bundled example is a problem the platform runs end to end, with nothing but its own folder.

The example's simulator writes the raw layer (through the raw assets' own load, validation and write), dbt builds
its features and labels, Spark its Delta snapshots, and then the main command's story runs real Dagster nights on
it: the first champion is trained from the point-in-time training set, the nightly pipeline runs from the raw
tables to the drift report, and the retrain sensor answers the drift the example's scenario brings. The output
tables carry the example's own names. (The subscription example, the default, runs this loop in
``tests/automation`` and ``tests/test_real_chain.py``.)
"""

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from churn_world import FAST_TRAINING
from deltalake import DeltaTable

from dagster_project import lake as lake_layout
from dagster_project import story
from dagster_project.definitions import build_definitions
from dagster_project.defs.ingestion.schemas import table_specs
from dagster_project.defs.ingestion.sources import load_raw
from dagster_project.defs.ingestion.validation import validate
from dagster_project.problem import load_problem
from dagster_project.resources import MlflowResource, build_resources
from dagster_project.settings import EXAMPLES_DIR, Settings, get_settings

START = dt.date(2025, 1, 1)
NIGHTS = 2


@dataclass(frozen=True)
class Loop:
    """How an example's loop is told: short, yet with a first model to train and a drift for it to meet."""

    warm_up_days: int  # days of history before the first night
    customers: int
    # Replaces the label horizon the example declares (None: the example's own). The shorter, the sooner a first
    # model can be trained.
    horizon_override: int | None = None
    # The shift starts this many days before the first scored night: the champion's reference (its validation
    # rows, a horizon before the night) must be calm, the nights not.
    drift_lead_days: int = 0


LOOPS = {
    # A short horizon: the first model can be trained after five weeks of history. An event log's population is
    # whoever was active in the last 90 days, so its first weeks are a warm-up (few users, hardly any who went
    # quiet yet): the first model needs weeks after it.
    "event_log": Loop(warm_up_days=60, customers=600, horizon_override=7, drift_lead_days=5),
    # Its declared horizon of 0: a label matures with its own extract, and the extract holds closed accounts from
    # the first day, so the shortest history the first model needs (a validation window and a week) is enough.
    # The champion's reference ends the night before the first night, so the shift starts on that night.
    "wide_extract": Loop(warm_up_days=21, customers=300, horizon_override=None, drift_lead_days=0),
}


def _settings(example: str, data_root: Path, monkeypatch: pytest.MonkeyPatch, first_night: dt.date) -> Settings:
    loop = LOOPS[example]
    monkeypatch.setenv("PLATFORM_PROBLEM_DIR", f"examples/{example}")
    monkeypatch.setenv("PLATFORM_DATA_ROOT", str(data_root))
    if loop.horizon_override is None:
        monkeypatch.delenv("PLATFORM_THRESHOLDS__CHURN_HORIZON_DAYS", raising=False)
    else:
        monkeypatch.setenv("PLATFORM_THRESHOLDS__CHURN_HORIZON_DAYS", str(loop.horizon_override))
    monkeypatch.setenv("PLATFORM_SIMULATOR__CUSTOMERS", str(loop.customers))
    monkeypatch.setenv("PLATFORM_SIMULATOR__SCENARIO", "price_rise")
    drift_start = first_night - dt.timedelta(days=loop.drift_lead_days)
    monkeypatch.setenv("PLATFORM_SIMULATOR__DRIFT_START", drift_start.isoformat())
    get_settings.cache_clear()
    return get_settings()


def _write_raw_history(settings: Settings, days: list[dt.date]) -> None:
    """The raw layer through the raw assets' own load, validation and write (their runs are tested in
    tests/ingestion); every row is kept or quarantined, none lost."""
    resources = build_resources(settings)
    source, lake = resources["raw_source"], resources["lake"]
    tables = table_specs(load_problem(settings).raw_tables)
    for day in days:
        for spec in tables.values():
            frame, origin = load_raw(source, spec, day)
            checked = validate(frame, spec, day, origin, tables.values())
            assert checked.rows_in == checked.rows_kept + checked.rows_quarantined
            lake.write_partition(lake_layout.RAW, spec.name, day, checked.valid, spec.arrow_schema())


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("example", list(LOOPS))
def test_an_example_runs_the_whole_loop_with_its_own_names(
    example: str, tmp_path: Path, mlflow_template_db: Path, monkeypatch: pytest.MonkeyPatch, spark: object
) -> None:
    probe = Settings(problem_dir=EXAMPLES_DIR / example)
    first = START + dt.timedelta(days=LOOPS[example].warm_up_days)
    settings = _settings(example, tmp_path / "data", monkeypatch, first)
    assert settings.problem_dir == probe.problem_dir and story.first_training_day(settings) <= first
    contract = load_problem(settings).contract
    store = MlflowResource.from_settings(settings)
    db = Path(store.tracking_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True)
    shutil.copyfile(mlflow_template_db, db)

    # The history before the first night: raw tables, then dbt, its exports and the snapshots in one ranged run.
    history = [START + dt.timedelta(days=i) for i in range((first - START).days)]
    _write_raw_history(settings, history)
    defs = build_definitions(settings)
    built = dg.materialize(
        [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)],
        selection=dg.AssetSelection.groups("features")
        | dg.AssetSelection.assets(["offline_store", "feature_snapshots"]),
        resources=defs.resources,
        tags={
            "dagster/asset_partition_range_start": history[0].isoformat(),
            "dagster/asset_partition_range_end": history[-1].isoformat(),
        },
    )
    assert built.success

    # The story's nights: bootstrap training, the whole nightly pipeline from the raw tables, the retrain sensor.
    nights = [first + dt.timedelta(days=i) for i in range(NIGHTS)]
    summary = story.run_story(
        defs, dg.DagsterInstance.ephemeral(), settings, nights, store, training_config=FAST_TRAINING
    )
    assert all(d.success for d in summary.days), [d.error for d in summary.days]
    assert [r.reason for r in summary.retrains][:1] == ["bootstrap"] and summary.retrains[0].success
    assert all(d.champion for d in summary.days), story.format_summary(summary)
    assert any(d.drift_failed for d in summary.days), [(d.day, d.drift_share, d.drifted_features) for d in summary.days]
    assert any(r.reason.startswith("drift") and r.success for r in summary.retrains), summary.retrains

    # The example's own names, end to end: the training set, the scores, the top-risk list.
    lake = settings.lake_root
    training_set = DeltaTable(str(lake_layout.offline_store(lake).training_set)).schema().to_arrow().names
    assert {*contract.entity, contract.prediction_time, contract.label} <= set(training_set)
    scores = DeltaTable(str(lake_layout.batch_scores_path(lake))).to_pyarrow_table()
    assert {*contract.entity, contract.as_of} <= set(scores.column_names)
    assert set(scores.column(contract.as_of).to_pylist()) == set(nights)
    top_risk = pd.read_csv(lake_layout.top_risk_path(lake, nights[-1]))
    assert [*contract.entity, contract.as_of] == list(top_risk.columns[1:3])
    assert set(contract.top_risk_columns) <= set(top_risk.columns)
