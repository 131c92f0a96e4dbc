"""The platform, not the model artifact, decides which types a registered model may load (real SQLite registry).

MLflow records ``skops_trusted_types`` in each model's ``MLmodel`` file and hands that list to ``skops.io.load``;
whoever can write a version's artifact could therefore trust anything. The platform loads with its own reviewed
allow-list (``serialization.ALLOWED_UNTRUSTED_TYPES``) and refuses a version that asks for more.
"""

import functools
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from dagster_project.defs.ml import registry, tracking
from dagster_project.defs.ml.assets import champion_serves
from dagster_project.defs.ml.serialization import ALLOWED_UNTRUSTED_TYPES, UntrustedArtifactError
from dagster_project.resources import MlflowResource

ROWS = pd.DataFrame({"feature_a": np.arange(40.0), "feature_b": np.arange(40.0) % 7})
LABELS = (ROWS["feature_a"] > 19).astype(int).to_numpy()


def _pipeline() -> Pipeline:
    return Pipeline([("step", FunctionTransformer()), ("classifier", LogisticRegression())]).fit(ROWS, LABELS)


def _register(store: MlflowResource, model: Pipeline, trusted: list[str], example: bool = True) -> str:
    """Log ``model`` as skops trusting ``trusted``, register it and make it champion; its version.

    ``example``: log an input example (MLflow predicts on it while logging)."""
    store.client()
    with mlflow.start_run(experiment_id=store.experiment_id()):
        info = mlflow.sklearn.log_model(
            model,
            name=tracking.MODEL_ARTIFACT,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=trusted,
            input_example=ROWS.head(3) if example else None,
            pyfunc_predict_fn="predict_proba",
        )
    version = str(mlflow.register_model(info.model_uri, store.model_name).version)
    store.client().set_registered_model_alias(store.model_name, tracking.CHAMPION, version)
    return version


def _edit_mlmodel(store: MlflowResource, version: str, **sklearn_flavor: object) -> None:
    """Rewrite the stored ``MLmodel`` of ``version`` in the artifact store, as someone with write access could."""
    folder = Path(store.client().get_model_version_download_uri(store.model_name, version).removeprefix("file://"))
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"].update(sklearn_flavor)
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))


def test_a_version_whose_artifact_trusts_an_unreviewed_type_is_refused_and_nothing_of_it_runs(
    mlflow_store: MlflowResource, tmp_path: Path
) -> None:
    # A model that writes a file when it predicts: its first step calls numpy.save on the rows it is given.
    marker = tmp_path / "ran.npy"
    spy = _pipeline()
    spy.named_steps["step"].func = functools.partial(np.save, str(marker))
    version = _register(mlflow_store, spy, trusted=[*ALLOWED_UNTRUSTED_TYPES, "numpy.save"], example=False)

    for load in (lambda: registry.load_version(mlflow_store, version), lambda: registry.load_champion(mlflow_store)):
        with pytest.raises(UntrustedArtifactError, match=rf"version {version}\b.*'numpy\.save'") as refused:
            load()
        assert "functools.partial" not in str(refused.value)  # only what is outside the allow-list is named
    # The blocking check on the champion fails, naming the type, instead of loading it the artifact's way.
    result = champion_serves(mlflow=mlflow_store)
    assert not result.passed and "numpy.save" in str(result.metadata["error"].value)
    assert not marker.exists()


def test_a_version_whose_mlmodel_was_edited_to_trust_more_or_to_unpickle_is_refused(
    mlflow_store: MlflowResource,
) -> None:
    version = _register(mlflow_store, _pipeline(), trusted=[])
    model = registry.load_version(mlflow_store, version)  # as logged: loads, with the platform's list
    np.testing.assert_array_equal(model.predict_proba(ROWS), _pipeline().predict_proba(ROWS))
    assert champion_serves(mlflow=mlflow_store).passed

    # The file itself holds nothing untrusted; the MLmodel alone asks to trust more: refused all the same.
    _edit_mlmodel(mlflow_store, version, skops_trusted_types=["builtins.eval", "numpy.dtype"])
    with pytest.raises(UntrustedArtifactError, match=rf"version {version}\b.*\['builtins\.eval'\]"):
        registry.load_version(mlflow_store, version)
    assert not champion_serves(mlflow=mlflow_store).passed

    # Pickle runs code as it loads, whatever any trust list says: the platform loads skops only.
    _edit_mlmodel(mlflow_store, version, skops_trusted_types=[], serialization_format="cloudpickle")
    with pytest.raises(UntrustedArtifactError, match=rf"version {version}\b.*cloudpickle"):
        registry.load_version(mlflow_store, version)


def test_a_version_is_deserialized_once_per_content_and_verified_at_every_load(
    mlflow_store: MlflowResource,
) -> None:
    version = _register(mlflow_store, _pipeline(), trusted=[])
    first = registry.load_version(mlflow_store, version)
    assert registry.load_version(mlflow_store, version) is first  # the same verified bytes: the same pipeline
    _edit_mlmodel(mlflow_store, version, note="edited after registration")  # other bytes, still trusted
    again = registry.load_version(mlflow_store, version)
    assert again is not first
    np.testing.assert_array_equal(again.predict_proba(ROWS), first.predict_proba(ROWS))
