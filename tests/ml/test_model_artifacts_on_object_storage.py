"""MLflow's artifacts on object storage: with ``PLATFORM_MLFLOW_ARTIFACT_ROOT`` an ``s3://`` prefix of a real S3
API server (moto's, ``tests/s3_server.py``), a model is trained, logged, registered and promoted by the ML
domain's own code, and loaded back through the registry's verified download, as scoring loads it. MLflow reaches
the store with boto3, configured by AWS's own variables only."""

import datetime as dt

import pytest
from churn_world import START, ChurnWorld, days, register_champion
from s3_server import S3Server
from sklearn.metrics import roc_auc_score

from dagster_project.defs.ml import registry
from dagster_project.settings import Settings


def test_a_champion_kept_on_object_storage_is_registered_and_loads_verified(
    s3_server: S3Server, mlflow_template_db, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"AWS_ENDPOINT_URL": s3_server.endpoint_url, "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_EC2_METADATA_DISABLED": "true", **s3_server.aws_env()}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    artifact_root = s3_server.uri(tmp_path.name, "mlflow")
    monkeypatch.setenv("PLATFORM_MLFLOW_ARTIFACT_ROOT", artifact_root)
    assert Settings().mlflow_artifact_root == artifact_root  # the URI as given: not folded into a path

    world = ChurnWorld(customers=500)
    store = register_champion(tmp_path, mlflow_template_db, world, days(START, 60), artifact_root=artifact_root)

    assert store.experiment_artifact_location == f"{artifact_root}/churn_model"
    keys = s3_server.keys(f"{tmp_path.name}/mlflow/churn_model/")
    models = [key for key in keys if key.endswith("/MLmodel")]
    assert models, f"no model in the bucket: {keys[:20]}"
    assert any(key.endswith(".skops") for key in keys)
    assert not (tmp_path / "mlflow" / "artifacts").exists()  # nothing of it on this disk

    champion = registry.load_champion(store)  # downloaded from the bucket and verified against the run's record
    assert champion.version == str(registry.version_by_alias(store, registry.CHAMPION).version)
    later = world.training_frame(days(START + dt.timedelta(days=70), 5))
    probabilities = champion.model.predict_proba(later[[f.name for f in world.contract.features]])[:, 1]
    assert roc_auc_score(later[world.contract.label], probabilities) > 0.6  # the trained model, whole
