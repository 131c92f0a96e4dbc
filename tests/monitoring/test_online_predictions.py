"""``monitoring/online_predictions`` on a real prediction log: the served day's traffic and drift, and the champion
against its shadowing challenger on the predictions whose labels matured."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from churn_world import CONTRACT, START, ChurnWorld
from sklearn.metrics import roc_auc_score

from dagster_project import asset_keys
from dagster_project import lake as lake_layout
from dagster_project.defs.ml.registry import load_version
from dagster_project.defs.ml.training import churn_probability, model_input
from dagster_project.defs.monitoring.comparison import compare_models
from dagster_project.defs.monitoring.online_predictions import ONLINE_DRIFT_CHECK, build_online_predictions
from dagster_project.defs.serving.prediction_log import write_log_file
from dagster_project.online_store import entity_key
from dagster_project.partitions import daily_partitions, label_horizon_mapping
from dagster_project.problem import load_problem
from dagster_project.resources import ContractResource, MlflowResource, build_resources
from dagster_project.settings import Settings

MATURED = START + dt.timedelta(days=70)  # the feature day whose predictions are judged on their labels


def _log(
    lake_root: Path, world: ChurnWorld, day: dt.date, store: MlflowResource, challenger_noise: float, seed: int
) -> pd.DataFrame:
    """A day of the service's log: every entity predicted twice (the last answer counts), the champion answering
    and a challenger (the champion's answer blurred by noise) shadowing it, and one entity answered by the
    challenger in an A/B split."""
    features = world.features(day)
    model = load_version(store, "1")
    names = [f.name for f in CONTRACT.features]
    probability = churn_probability(model, model_input(features, model))
    rng = np.random.default_rng(seed)
    shadow = np.clip(probability + rng.normal(0, challenger_noise, len(probability)), 0, 1)
    stamp = pd.Timestamp(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    rows = []
    for repeat in range(2):
        for i, record in enumerate(features.to_dict("records")):
            variant = "challenger" if i == 0 else "champion"
            rows.append(
                {
                    "request_id": f"r{repeat}-{i}",
                    "entity_key": entity_key([record["customer_id"]]),
                    "features": json.dumps({n: record[n] for n in names}, default=str),
                    "overrides": "{}",
                    "model_name": "churn_model",
                    "model_version": "2" if variant == "challenger" else "1",
                    "variant": variant,
                    "probability": float(shadow[i] if variant == "challenger" else probability[i]),
                    "risk_band": "low",
                    "shadow_model_version": "2",
                    "shadow_probability": float(shadow[i]),
                    "latency_ms": 1.0 + i % 10,
                    "requested_at": stamp + pd.Timedelta(seconds=repeat * 10_000 + i),
                    "feature_snapshot_date": day,
                }
            )
    write_log_file(lake_root, day, rows)
    return pd.DataFrame(rows)


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == asset_keys.ONLINE_PREDICTIONS]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _run(settings: Settings, store: MlflowResource, partition: dt.date) -> dg.ExecuteInProcessResult:
    problem = load_problem(settings)
    asset = build_online_predictions(daily_partitions(settings), label_horizon_mapping(problem.contract), problem)
    return dg.materialize(
        [asset],
        partition_key=partition.isoformat(),
        resources={**build_resources(settings), "mlflow": store, "contract": ContractResource.of(CONTRACT)},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


@pytest.mark.slow
def test_online_predictions_judges_the_served_traffic_and_the_matured_comparison(
    settings: Settings, world_champion: MlflowResource
) -> None:
    world = ChurnWorld()
    horizon = load_problem(settings).contract.horizon_days
    partition = MATURED + dt.timedelta(days=horizon)
    served_day = partition - dt.timedelta(days=1)

    # No traffic yet: materialized with zero predictions, the drift check skipped rather than faked.
    empty = _run(settings, world_champion, partition)
    assert empty.success and not empty.get_asset_check_evaluations()
    meta = _metadata(empty)
    assert meta["predictions"] == 0 and meta["drift_evaluated"] is False

    served = _log(settings.lake_root, world, served_day, world_champion, challenger_noise=0.05, seed=1)
    matured = _log(settings.lake_root, world, MATURED, world_champion, challenger_noise=0.2, seed=2)
    world.write_labels(settings.lake_root, [MATURED + dt.timedelta(days=world.horizon)])
    result = _run(settings, world_champion, partition)
    assert result.success
    meta = _metadata(result)
    assert meta["predictions"] == len(served) == 2 * world.customers and meta["entities"] == world.customers
    assert meta["challenger_predictions"] == 2 and meta["shadowed_predictions"] == len(served)
    assert meta["served_feature_day"] == served_day.isoformat() and meta["drift_evaluated"] is True
    assert meta["latency_p50_ms"] == pytest.approx(np.percentile(served["latency_ms"], 50), abs=1e-6)
    assert lake_layout.online_drift_report_path(settings.lake_root, served_day).exists()
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == ONLINE_DRIFT_CHECK and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["entities"].value == world.customers - 1  # the champion's answers, one per entity

    # The comparison (metadata rounds to 6 digits): the champion-answered rows of the matured day, the last
    # prediction per entity, with their labels.
    labels = world.labels(MATURED)[["customer_id", "churned"]]
    last = matured.drop_duplicates("entity_key", keep="last")
    same_rows = last[last["variant"] == "champion"].merge(labels, left_on="entity_key", right_on="customer_id")
    expected = compare_models(same_rows["churned"], same_rows["probability"], same_rows["shadow_probability"])
    assert meta["matured_feature_day"] == MATURED.isoformat() and meta["compared_rows"] == len(same_rows)
    assert meta["champion_roc_auc"] == pytest.approx(
        roc_auc_score(same_rows["churned"], same_rows["probability"]), abs=1e-6
    )
    assert meta["challenger_roc_auc"] == pytest.approx(expected.challenger_roc_auc, abs=1e-6)
    assert meta["roc_auc_difference"] == pytest.approx(expected.difference, abs=1e-6) and meta["roc_auc_difference"] < 0
    assert meta["roc_auc_difference_standard_error"] == pytest.approx(expected.difference_standard_error, abs=1e-6)
    assert meta["champion_version"] == "1" and meta["challenger_version"] == "2"
    stored = pd.read_parquet(lake_layout.online_predictions_path(settings.lake_root, partition))
    assert stored["compared_rows"].iloc[0] == len(same_rows)
