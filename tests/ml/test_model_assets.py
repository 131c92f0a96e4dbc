"""The model assets through Dagster's own ``materialize``: train, gate, reproduce, refuse, re-gate, roll back."""

from pathlib import Path

import dagster as dg
from synthetic_churn import FAST, synthetic_contract

from dagster_project import asset_keys
from dagster_project.defs.ml.assets import (
    CHAMPION_CHECK,
    champion_serves,
    churn_model,
    rollback_champion,
)
from dagster_project.defs.ml.registry import version_by_alias
from dagster_project.resources import ContractResource, MlflowResource, build_resources
from dagster_project.settings import Settings

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "recall_top_decile")


def _resources(settings: Settings) -> dict[str, object]:
    """The definitions' resources, with the contract of the synthetic training set the model trains on."""
    return {**build_resources(settings), "contract": ContractResource.of(synthetic_contract())}


def _run(
    settings: Settings, instance: dg.DagsterInstance, selection: list[dg.AssetKey] | None = None, **config: object
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [churn_model, champion_serves],
        selection=selection,
        instance=instance,
        resources=_resources(settings),
        run_config={"ops": {"churn_model": {"config": {**FAST, **config}}}},
    )


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    return {
        event.asset_key.path[-1]: {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }


def test_assets_train_gate_reproduce_refuse_and_roll_back(
    settings: Settings, mlflow_store: MlflowResource, training_set: tuple[Path, int]
) -> None:
    with dg.instance_for_test() as instance:
        first = _run(settings, instance, training_set_version=0)
        meta = _metadata(first)
        model = meta["churn_model"]
        assert set(METRICS) <= set(model) and model["roc_auc"] > 0.75
        assert model["decision"] == "promoted" and model["model_version"] == "1"
        assert str(model["mlflow_run"]).startswith("http://127.0.0.1:5000/#/experiments/")
        assert model["training_set_version"] == 0 and model["feature_store_version"] == "7"
        assert meta["champion_model"]["champion_version"] == "1"
        assert [(c.check_name, c.passed) for c in first.get_asset_check_evaluations()] == [(CHAMPION_CHECK, True)]

        # Retraining on the same lineage reproduces the metrics exactly, and an equal model may replace the champion.
        again = _metadata(_run(settings, instance, training_set_version=0))
        assert {k: again["churn_model"][k] for k in METRICS} == {k: model[k] for k in METRICS}
        assert again["churn_model"]["decision"] == "promoted"

        # A model that learned nothing is registered, its verdict shown, and the champion does not change.
        refused = _run(settings, instance, shuffle_train_labels=True)
        meta = _metadata(refused)
        assert set(meta) == {"churn_model"}  # no champion_model materialization: the champion did not change
        assert meta["churn_model"]["model_version"] == "3" and meta["churn_model"]["decision"] == "rejected"
        assert meta["churn_model"]["champion_version_before"] == "2"
        assert str(version_by_alias(mlflow_store, "champion").version) == "2"
        assert str(version_by_alias(mlflow_store, "challenger").version) == "3"

        # The gate alone, on the current challenger: same verdict, recorded on the model asset as an observation.
        regate = _run(settings, instance, selection=[asset_keys.CHAMPION_MODEL])
        assert regate.success and not regate.get_asset_materialization_events()
        observation = instance.fetch_observations(asset_keys.CHURN_MODEL, limit=1).records[0].asset_observation
        assert observation.metadata["decision"].value == "rejected"

        # Roll back through the Dagster job: the champion asset's history records it.
        rolled = rollback_champion.execute_in_process(
            instance=instance,
            resources=_resources(settings),
            run_config={"ops": {"set_champion_alias": {"config": {"version": 1, "reason": "test"}}}},
        )
        assert rolled.success
        assert str(version_by_alias(mlflow_store, "champion").version) == "1"
        latest = instance.get_latest_materialization_event(asset_keys.CHAMPION_MODEL).asset_materialization
        assert (latest.metadata["change"].value, latest.metadata["champion_version"].value) == ("rollback", "1")
        assert latest.tags["dagster/data_version"] == "1"  # what downstream staleness compares


def test_real_definitions_wire_the_model_assets_and_the_rollback_job() -> None:
    from dagster_project.definitions import defs as load_definitions

    defs = load_definitions()

    graph = defs.resolve_asset_graph()
    assert graph.get(asset_keys.CHURN_MODEL).parent_keys == {asset_keys.TRAINING_SET}
    assert graph.get(asset_keys.CHAMPION_MODEL).parent_keys == {asset_keys.CHURN_MODEL}
    assert graph.get(asset_keys.CHURN_MODEL).group_name == "ml"
    job = defs.resolve_job_def("rollback_champion")
    dg.validate_run_config(job, {"ops": {"set_champion_alias": {"config": {"version": 1}}}})
