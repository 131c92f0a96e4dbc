"""The story is reproducible: two runs from empty data roots with the same seed tell the same story.

Same nights, same drift days, same training sets (content fingerprints), same model versions with the same
validation and holdout AUCs, the same gate decisions, and so the same printed summary. Each run is the real story
(``story.run_story``) from the offline store on, as in ``tests/automation/test_retrain_loop.py``: a small churn
world writes the history, Spark builds the snapshots and the training sets, MLflow holds the registry.
"""

import datetime as dt
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from churn_world import FAST_TRAINING, START, ChurnWorld, days

from dagster_project import story
from dagster_project.defs import automation, ml, monitoring, offline_store, scoring
from dagster_project.resources import ContractResource, MlflowResource, build_resources
from dagster_project.settings import Settings, get_settings

HORIZON_DAYS = 7  # a short label horizon: the first model can be trained after five weeks of history
NIGHTS = 2  # a bootstrap and a calm first night, drift on the second: one sensor retrain through the gate


def _story_from_empty_root(root: Path, template_db: Path, monkeypatch: pytest.MonkeyPatch) -> story.StorySummary:
    monkeypatch.setenv("PLATFORM_DATA_ROOT", str(root))
    monkeypatch.setenv("PLATFORM_THRESHOLDS__CHURN_HORIZON_DAYS", str(HORIZON_DAYS))
    get_settings.cache_clear()
    settings: Settings = get_settings()
    store = MlflowResource.from_settings(settings)
    db = Path(store.tracking_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True)
    shutil.copyfile(template_db, db)  # an empty, migrated MLflow store

    first = story.first_training_day(settings)
    world = ChurnWorld(customers=600, horizon=HORIZON_DAYS, drift_start=first + dt.timedelta(days=1))
    world.write_feature_snapshots(settings.lake_root, days(START, (first - START).days))
    matured = START + dt.timedelta(days=HORIZON_DAYS)
    world.write_labels(settings.lake_root, days(matured, (first - matured).days))
    nights = days(first, NIGHTS)
    world.write_feature_exports(settings.lake_root, nights)
    defs = dg.Definitions.merge(
        *(domain.build_defs(settings) for domain in (offline_store, ml, scoring, monitoring, automation)),
        dg.Definitions(resources={**build_resources(settings), "contract": ContractResource.of(world.contract)}),
    )
    instance = dg.DagsterInstance.ephemeral()
    summary = story.run_story(defs, instance, settings, nights, store, training_config=FAST_TRAINING)
    get_settings.cache_clear()
    return summary


def _comparable(summary: story.StorySummary) -> dict[str, Any]:
    """Everything the story decided and measured; the sensor's messages name nothing that differs between roots."""
    return {
        "days": [asdict(d) for d in summary.days],
        "retrains": [asdict(r) for r in summary.retrains],
        "versions": summary.versions,
        "text": story.format_summary(summary),
    }


@pytest.mark.spark
@pytest.mark.slow
def test_two_runs_from_empty_data_roots_tell_the_same_story(
    tmp_path: Path, mlflow_template_db: Path, monkeypatch: pytest.MonkeyPatch, spark: object
) -> None:
    first = _story_from_empty_root(tmp_path / "first", mlflow_template_db, monkeypatch)
    second = _story_from_empty_root(tmp_path / "second", mlflow_template_db, monkeypatch)

    assert all(d.success for d in first.days), [d.error for d in first.days]
    # The story did what it is meant to show: a bootstrap, drift, a sensor retrain judged by the gate.
    assert [r.reason for r in first.retrains] == ["bootstrap", "drift"]
    assert all(r.success and r.decision in {"promoted", "rejected"} for r in first.retrains)
    assert all(r.training_set_fingerprint for r in first.retrains)
    assert any(d.drift_failed for d in first.days)
    assert _comparable(second) == _comparable(first)
