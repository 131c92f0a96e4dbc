"""The skew gate on real runs: the online store published from the Delta snapshot and the batch scores of the same
day agree with the prediction service's answers; a planted skew, in a stored feature or in a batch score, fails it
naming the entity."""

import datetime as dt
import sqlite3

import dagster as dg
import orjson
import pytest
from churn_world import CONTRACT, START, ChurnWorld

from dagster_project import asset_keys
from dagster_project.defs.scoring import scores as scoring
from dagster_project.defs.scoring.assets import build_batch_scores
from dagster_project.defs.serving.assets import build_online_store
from dagster_project.defs.serving.skew import SKEW_CHECK, build_skew_gate, same_value
from dagster_project.partitions import daily_partitions
from dagster_project.problem import load_problem
from dagster_project.resources import ContractResource, MlflowResource, build_resources
from dagster_project.settings import Settings

DAY = START + dt.timedelta(days=70)
CHECK = dg.AssetCheckKey(asset_keys.ONLINE_STORE, SKEW_CHECK)


def _assets(settings: Settings) -> list:
    problem = load_problem(settings)
    partitions = daily_partitions(settings)
    return [
        build_online_store(partitions, CONTRACT, settings.serving.online_backend.value),
        build_batch_scores(partitions, problem),
        build_skew_gate(),
    ]


def _run(settings: Settings, store: MlflowResource, check_only: bool = False) -> dg.AssetCheckEvaluation:
    """A run of the day's online store, batch scores and skew gate; or of the gate alone, as the UI's "Execute"
    of the check runs it (it judges the day the store holds, so it takes no partition)."""
    job = dg.define_asset_job("skew_gate", selection=dg.AssetSelection.checks(CHECK)) if check_only else None
    defs = dg.Definitions(
        assets=_assets(settings)[:2],
        asset_checks=_assets(settings)[2:],
        jobs=[job] if job else [],
        # The churn world declares its own contract (the features its champion was trained on).
        resources={**build_resources(settings), "mlflow": store, "contract": ContractResource.of(CONTRACT)},
    )
    config = {"ops": {"serving__online_store_online_matches_offline": {"config": {"sample_size": 10_000}}}}
    if check_only:
        result = defs.resolve_job_def("skew_gate").execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), run_config=config, raise_on_error=False
        )
    else:
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],
            partition_key=DAY.isoformat(),
            resources=defs.resources,
            instance=dg.DagsterInstance.ephemeral(),
            run_config=config,
            raise_on_error=False,
        )
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.asset_check_key == CHECK]
    return evaluation


def test_same_value_is_exact() -> None:
    assert same_value(0.1, 0.1) and same_value(None, None) and same_value(3, 3.0) and same_value("a", "a")
    assert not same_value(0.1, 0.1 + 1e-17 * 10) and not same_value(None, 0.0) and not same_value("a", "b")


@pytest.mark.slow
def test_the_online_path_matches_the_batch_path_until_a_skew_is_planted(
    settings: Settings, world_champion: MlflowResource
) -> None:
    world = ChurnWorld()
    world.write_feature_snapshots(settings.lake_root, [DAY])
    check = _run(settings, world_champion)
    meta = {k: v.value for k, v in check.metadata.items()}
    assert check.passed, meta
    assert meta["compared_entities"] == world.customers == meta["entities_online"] == meta["entities_offline"]
    assert meta["compared_values"] == world.customers * len(CONTRACT.features)
    assert meta["compared_probabilities"] == world.customers and meta["max_probability_difference"] <= 1e-9
    assert meta["batch_scored_by_version"] == "1"

    # A feature skew: one stored value differs from the snapshot's by the last bit.
    database = settings.serving.online_store_path
    with sqlite3.connect(database) as connection:
        entity, payload = connection.execute("SELECT entity, payload FROM features ORDER BY entity LIMIT 1").fetchone()
        features = orjson.loads(payload)
        name = next(n for n, v in features.items() if isinstance(v, float) and v)
        features[name] = features[name] * (1 + 2**-52)
        connection.execute("UPDATE features SET payload = ? WHERE entity = ?", (orjson.dumps(features), entity))
    skewed = _run(settings, world_champion, check_only=True)
    meta = {k: v.value for k, v in skewed.metadata.items()}
    assert not skewed.passed and meta["feature_mismatches"] == 1
    assert entity in meta["feature_mismatch_examples"] and name in meta["feature_mismatch_examples"]

    # Republished, the store is whole again; then a batch score that the service does not reproduce.
    assert _run(settings, world_champion).passed
    stored = scoring.read_scores(settings.lake_root, DAY, CONTRACT)
    stored.loc[0, scoring.PROBABILITY] += 1e-6
    scoring.write_scores(settings.lake_root, DAY, stored, CONTRACT)
    skewed = _run(settings, world_champion, check_only=True)
    meta = {k: v.value for k, v in skewed.metadata.items()}
    assert not skewed.passed and meta["feature_mismatches"] == 0 and meta["probability_mismatches"] == 1
    assert str(stored.loc[0, CONTRACT.entity[0]]) in meta["probability_mismatch_examples"]
