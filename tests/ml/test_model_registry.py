"""MLflow tracking and the registry, on a real SQLite store: logging, the promotion gate, rollback, fresh loads."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.types.utils import _infer_schema  # MLflow's own inference: the reference
from synthetic_churn import synthetic_contract

from dagster_project import asset_keys
from dagster_project.defs.ml import registry, rollback, tracking
from dagster_project.defs.ml.serialization import trusted_types_for
from dagster_project.defs.ml.training import (
    ModelKind,
    TrainingParams,
    TrainingResult,
    frame_hash,
    train_from_training_set,
)
from dagster_project.resources import MlflowResource
from dagster_project.settings import REPO_ROOT, Settings

METRICS = {"roc_auc", "pr_auc", "log_loss", "brier", "recall_top_decile"}
CONTRACT = synthetic_contract()


def _train_and_register(
    training_set: tuple[Path, int], store: MlflowResource, params: TrainingParams
) -> tuple[TrainingResult, tracking.RegisteredModel]:
    result = train_from_training_set(str(training_set[0]), CONTRACT, training_set[1], params)
    return result, tracking.log_and_register(result, store, dagster_run_id="test-run")


def _gate(store: MlflowResource, settings: Settings, **overrides: float) -> registry.PromotionDecision:
    thresholds = {"auc_floor": settings.thresholds.auc_floor, "tolerance": settings.thresholds.promotion_tolerance}
    return registry.run_promotion_gate(store, CONTRACT, **{**thresholds, **overrides}, lake_root=settings.lake_root)


def _champion(store: MlflowResource) -> str | None:
    version = registry.version_by_alias(store, tracking.CHAMPION)
    return None if version is None else str(version.version)


def _protected(settings: Settings) -> dict[str, list[int]]:
    # The path the offline store's maintenance reads (the contract), spelled out.
    return json.loads((Path(settings.lake_root) / "offline_store" / "_protected_versions.json").read_text())


def test_a_run_logs_everything_and_the_first_model_becomes_champion(
    settings: Settings, mlflow_store: MlflowResource, training_set: tuple[Path, int], fast_params: TrainingParams
) -> None:
    result, registered = _train_and_register(training_set, mlflow_store, fast_params)
    client = mlflow_store.client()

    run = client.get_run(registered.run_id)
    assert run.info.status == "FINISHED"
    assert set(run.data.metrics) == METRICS
    assert run.data.metrics["roc_auc"] == result.metrics["roc_auc"]
    assert run.data.params["max_iter"] == "50" and run.data.params["model_kind"] == "hist_gradient_boosting"
    tags = run.data.tags
    assert tags["training_set.path"] == str(training_set[0])
    assert tags["training_set.version"] == "0"
    assert tags["feature_store.version"] == "7"
    assert tags["training_set.dagster_run_id"] == "test-run"
    assert tags["dagster.run_id"] == "test-run"
    assert tags["dbt.model_checksum"] == "unknown"  # the synthetic commit names no dbt model
    assert len(tags["git.commit"]) == 40 or tags["git.commit"] == "unknown"
    # Both datasets are logged with their Delta source and version.
    contexts = {}
    for dataset_input in run.inputs.dataset_inputs:
        source = json.loads(dataset_input.dataset.source)
        # MLflow leaves version 0 out of the source (a falsy check); the dataset's name carries it too.
        assert (source["path"], source.get("delta_table_version", 0)) == (str(training_set[0]), 0)
        assert "training_set-v0-" in dataset_input.dataset.name
        contexts[dataset_input.tags[0].value] = dataset_input.dataset.name
        if dataset_input.tags[0].value == "validation":  # the schema MLflow itself infers from the logged rows
            logged = result.X_validation.assign(**{CONTRACT.label: result.y_validation})
            with tracking._quiet_dataset_schema_hint():
                expected = _infer_schema(logged).to_dict()
            assert json.loads(dataset_input.dataset.schema) == {"mlflow_colspec": expected}
            # Its digest is the content hash of every logged row.
            assert dataset_input.dataset.digest == frame_hash(logged)[: tracking.DATASET_DIGEST_CHARS]
    assert set(contexts) == {"training", "validation"}

    artifacts = {a.path for a in client.list_artifacts(registered.run_id, "plots")}
    assert artifacts == {
        f"plots/{name}.png"
        for name in ("roc_curve", "precision_recall_curve", "calibration_curve", "feature_importance")
    }
    reference = pd.read_parquet(
        mlflow.artifacts.download_artifacts(run_id=registered.run_id, artifact_path=tracking.REFERENCE_ARTIFACT)
    )
    assert len(reference) == fast_params.reference_sample_rows
    assert {*result.features.all, "prediction", CONTRACT.label} <= set(reference.columns)
    assert reference["prediction"].between(0, 1).all()
    # Drawn from the validation window, the most recent data the model was judged on before deployment.
    reference_days = pd.to_datetime(reference["feature_snapshot_date"]).dt.date
    assert reference_days.min() >= result.split.validation_start
    assert reference_days.max() <= result.split.validation_end

    # The model: skops, trusting exactly the reviewed types this pipeline holds, with signature and example.
    version = client.get_model_version(mlflow_store.model_name, registered.version)
    assert registered.version == "1" and version.aliases == [tracking.CHALLENGER]
    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{mlflow_store.model_name}/1"))
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert mlmodel["flavors"]["sklearn"]["skops_trusted_types"] == trusted_types_for(result.pipeline)
    assert mlmodel["flavors"]["python_function"]["predict_fn"] == "predict_proba"
    assert mlmodel["signature"]["inputs"] and (model_dir / "input_example.json").exists()
    assert version.tags["training_set.version"] == "0"
    assert float(version.tags["metric.roc_auc"]) == result.metrics["roc_auc"]
    assert (
        registered.run_url == f"http://127.0.0.1:5000/#/experiments/{registered.experiment_id}/runs/{run.info.run_id}"
    )

    decision = _gate(mlflow_store, settings)
    assert decision.promoted and decision.decision == "promoted" and decision.champion_version is None
    assert decision.challenger_roc_auc == pytest.approx(result.metrics["roc_auc"], abs=1e-12)
    assert _champion(mlflow_store) == "1"
    tags = client.get_model_version(mlflow_store.model_name, "1").tags
    assert tags["promotion.decision"] == "promoted" and "no champion yet" in tags["promotion.reason"]
    assert _protected(settings) == {"feature_snapshots": [7], "training_set": [0]}
    # Running the gate again on the same challenger changes nothing, and keeps the verdict on record.
    assert _gate(mlflow_store, settings).decision == "unchanged"
    tags = client.get_model_version(mlflow_store.model_name, "1").tags
    assert (tags["promotion.decision"], tags["promotion.passed"]) == ("promoted", "true")
    assert "promotion.rechecked_at" in tags


def test_the_logged_schema_is_mlflows_own_with_nulls_found_past_the_sample() -> None:
    rows = tracking.SCHEMA_SAMPLE_ROWS * 2
    frame = pd.DataFrame(
        {
            "tenure_days": np.arange(rows, dtype="float64"),
            "late_gap": np.r_[np.ones(rows - 1), np.nan],  # its only null is past the sampled rows
            "plan": pd.Series(["basic", "premium"] * (rows // 2), dtype=object),
            "churned": np.zeros(rows, dtype="int64"),
        }
    )
    with tracking._quiet_dataset_schema_hint():
        expected = _infer_schema(frame)
        fast = tracking.dataset_schema(frame)
    assert fast == expected
    assert [spec.name for spec in fast.inputs if not spec.required] == ["late_gap"]


def test_a_model_trained_on_shuffled_labels_is_registered_but_never_promoted(
    settings: Settings, mlflow_store: MlflowResource, training_set: tuple[Path, int], fast_params: TrainingParams
) -> None:
    shuffled = fast_params.model_copy(update={"shuffle_train_labels": True})

    # As the very first model: registered, but below the floor, so there is still no champion.
    _, first = _train_and_register(training_set, mlflow_store, shuffled)
    decision = _gate(mlflow_store, settings)
    assert (first.version, decision.decision, _champion(mlflow_store)) == ("1", "rejected", None)
    assert "below the floor" in decision.reason

    _train_and_register(training_set, mlflow_store, fast_params)
    assert _gate(mlflow_store, settings).promoted and _champion(mlflow_store) == "2"

    # Against a champion: rejected, and still rejected with no floor at all, by the comparison alone.
    _, third = _train_and_register(training_set, mlflow_store, shuffled)
    assert str(registry.version_by_alias(mlflow_store, tracking.CHALLENGER).version) == third.version == "3"
    for floor in (settings.thresholds.auc_floor, 0.0):
        decision = _gate(mlflow_store, settings, auc_floor=floor)
        assert not decision.promoted and _champion(mlflow_store) == "2"
    assert "trails the champion" in decision.reason
    tags = mlflow_store.client().get_model_version(mlflow_store.model_name, "3").tags
    assert tags["promotion.decision"] == "rejected"
    assert tags["promotion.champion_version"] == "2"
    assert float(tags["promotion.champion_roc_auc"]) > 0.75 > float(tags["promotion.challenger_roc_auc"])
    assert json.loads(tags["promotion.holdout"])["training_set_version"] == 0


def test_rollback_sets_an_earlier_champion_that_scoring_then_loads(
    settings: Settings,
    mlflow_store: MlflowResource,
    training_set: tuple[Path, int],
    fast_params: TrainingParams,
    capsys: pytest.CaptureFixture[str],
) -> None:
    booster, _ = _train_and_register(training_set, mlflow_store, fast_params)
    assert _gate(mlflow_store, settings).promoted
    baseline = fast_params.model_copy(update={"model_kind": ModelKind.logistic_regression})
    _, second = _train_and_register(training_set, mlflow_store, baseline)
    assert _gate(mlflow_store, settings).promoted and _champion(mlflow_store) == second.version == "2"
    _train_and_register(training_set, mlflow_store, fast_params.model_copy(update={"shuffle_train_labels": True}))
    assert not _gate(mlflow_store, settings).promoted

    rolled = registry.rollback_champion(mlflow_store, 1, reason="test", lake_root=settings.lake_root)
    assert (rolled.previous_version, rolled.version, _champion(mlflow_store)) == ("2", "1", "1")
    champion = registry.load_champion(mlflow_store)  # what the scoring asset calls on its next run
    assert champion.version == "1"
    rows = booster.split.validation
    np.testing.assert_array_equal(champion.churn_probability(rows), booster.validation_scores)
    assert champion.reference_sample().shape[0] == fast_params.reference_sample_rows

    # A version the gate refused needs --force.
    with pytest.raises(registry.RollbackRefusedError, match="never passed the promotion gate"):
        registry.rollback_champion(mlflow_store, 3)
    with pytest.raises(LookupError, match="versions: \\[1, 2, 3\\]"):
        registry.rollback_champion(mlflow_store, 9)
    assert _champion(mlflow_store) == "1"

    # The documented command, in its own process.
    env = {**os.environ, "PLATFORM_DATA_ROOT": str(settings.data_root)}
    command = [sys.executable, "-m", "dagster_project.defs.ml.rollback", "--version", "2"]
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "v1 -> v2" in done.stdout
    assert _champion(mlflow_store) == "2"
    assert mlflow_store.client().get_model_version(mlflow_store.model_name, "2").tags["rollback.from_version"] == "1"
    # In process: a refused version changes nothing; with the platform's Dagster instance present, the change is
    # recorded there as a materialization of ml/champion_model.
    assert rollback.main(["--version", "3"]) == 2
    assert "--force" in capsys.readouterr().err
    assert _champion(mlflow_store) == "2"
    Path(settings.dagster_home).mkdir(parents=True)
    assert rollback.main(["--version", "1", "--reason", "v2 misbehaves"]) == 0
    assert _champion(mlflow_store) == "1"
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        event = instance.get_latest_materialization_event(asset_keys.CHAMPION_MODEL)
    metadata = event.asset_materialization.metadata
    assert (metadata["champion_version"].value, metadata["reason"].value) == ("1", "v2 misbehaves")
    assert rollback.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert "champion" in listing and "rejected" in listing
    # Every version that may be rolled back to keeps its training set readable (all share version 0 here).
    assert _protected(settings) == {"feature_snapshots": [7], "training_set": [0]}


def test_load_champion_without_one_says_how_to_get_one(mlflow_store: MlflowResource) -> None:
    with pytest.raises(registry.NoChampionError, match="materialize"):
        registry.load_champion(mlflow_store)


def test_champion_loads_in_a_fresh_process_with_the_in_memory_predictions(
    settings: Settings,
    mlflow_store: MlflowResource,
    training_set: tuple[Path, int],
    fast_params: TrainingParams,
    tmp_path: Path,
) -> None:
    result, _ = _train_and_register(training_set, mlflow_store, fast_params)
    assert _gate(mlflow_store, settings).promoted
    rows = tmp_path / "rows.parquet"
    result.X_validation.to_parquet(rows)
    out = tmp_path / "predictions.npy"
    script = textwrap.dedent(
        f"""
        import mlflow, numpy as np, pandas as pd
        model = mlflow.pyfunc.load_model("models:/{mlflow_store.model_name}@champion")
        np.save({str(out)!r}, np.asarray(model.predict(pd.read_parquet({str(rows)!r}))))
        """
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store.tracking_uri}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = np.load(out)
    assert loaded.shape == (len(result.X_validation), 2)
    np.testing.assert_array_equal(loaded, result.pipeline.predict_proba(result.X_validation))
