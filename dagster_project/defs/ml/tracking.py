"""Logging a trained model to MLflow and registering it as the new ``challenger``.

One MLflow run per training: parameters, validation metrics (linked to the logged model and the validation
dataset, so the model version page shows them), the datasets with their Delta source and version, the model
(skops, signature, input example, pinned requirements), diagnostic plots, the drift-monitoring reference sample
and lineage tags. The registered model version carries the same lineage and metrics as tags, so the registry
alone answers "what data, code and parameters made the champion?".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dagster_project.defs.ml import importance, plots
from dagster_project.defs.ml.aliases import move_alias
from dagster_project.defs.ml.serialization import trusted_types_for
from dagster_project.defs.ml.training import TrainingResult, feature_frame, frame_hash, reference_sample
from dagster_project.resources import MlflowResource
from dagster_project.settings import REPO_ROOT

CHALLENGER = "challenger"
CHAMPION = "champion"
MODEL_ARTIFACT = "model"
REFERENCE_ARTIFACT = "reference/reference_sample.parquet"
IMPORTANCE_ARTIFACT = "feature_importance.csv"
# Tag keys shared by the run and the model version; the promotion gate and the rollback read them back.
TAG_TRAINING_SET_PATH = "training_set.path"
TAG_TRAINING_SET_VERSION = "training_set.version"
TAG_FEATURE_STORE_VERSION = "feature_store.version"
TAG_DBT_MODEL_CHECKSUM = "dbt.model_checksum"
TAG_GIT_COMMIT = "git.commit"
TAG_DAGSTER_RUN = "dagster.run_id"
TAG_VALIDATION_DAYS = "split.validation_days"
TAG_HORIZON = "split.churn_horizon_days"
TAG_TRAIN_LAST_LABEL_END = "split.train_last_label_end"
# The counts the validation ROC AUC was measured on: its standard error, which the performance check weighs.
TAG_VALIDATION_ROWS = "split.validation_rows"
TAG_VALIDATION_POSITIVES = "split.validation_positives"
REGISTERED_MODEL_DESCRIPTION = (
    "Probability that a subscriber cancels within the churn horizon, from the offline store's features. "
    "Aliases: `challenger` = the latest trained version; `champion` = the version batch scoring uses, set by the "
    "promotion gate (ml/champion_model) or a rollback (`python -m dagster_project.defs.ml.rollback --version N`). "
    "Each version's tags hold its lineage (training_set.*, feature_store.version, dbt.model_checksum, git.commit, "
    "dagster.run_id), its validation metrics (metric.*) and the gate's verdict (promotion.*)."
)
UNKNOWN = "unknown"  # MLflow tags are strings: a lineage value we could not find is said so, not left out


@dataclass(frozen=True)
class RegisteredModel:
    """Where a training run landed in MLflow."""

    name: str
    version: str
    run_id: str
    experiment_id: str
    model_uri: str  # models:/<name>/<version>
    run_url: str
    model_version_url: str


def git_commit(repo: Path = REPO_ROOT) -> tuple[str | None, bool | None]:
    """The checked-out commit of the repository and whether the tree has uncommitted changes.

    Where there is no git checkout (a container image), ``GIT_COMMIT`` from the environment names the commit the
    image was built from, with unknown dirtiness; without either, (None, None).
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("GIT_COMMIT") or None, None
    return commit or None, bool(status.strip())


def lineage_tags(result: TrainingResult, dagster_run_id: str | None) -> dict[str, str]:
    """The tags that tie a model to the exact data, code and parameters that made it."""
    ts = result.training_set
    commit, dirty = git_commit()
    tags = {
        TAG_TRAINING_SET_PATH: ts.path,
        TAG_TRAINING_SET_VERSION: str(ts.version),
        TAG_FEATURE_STORE_VERSION: ts.feature_store_version or UNKNOWN,
        TAG_DBT_MODEL_CHECKSUM: ts.dbt_model_checksum or UNKNOWN,
        "training_set.dagster_run_id": ts.dagster_run_id or UNKNOWN,
        "training_data.sha256": result.training_data_hash,
        TAG_GIT_COMMIT: commit or UNKNOWN,
        "git.dirty": UNKNOWN if dirty is None else str(dirty).lower(),
        TAG_DAGSTER_RUN: dagster_run_id or UNKNOWN,
        "model.kind": result.params.model_kind.value,
        TAG_VALIDATION_DAYS: str(result.params.validation_days),
        TAG_HORIZON: str(result.split.churn_horizon_days),
        TAG_TRAIN_LAST_LABEL_END: result.split.train_last_label_end.isoformat(),
        "split.validation_start": result.split.validation_start.isoformat(),
        "split.validation_end": result.split.validation_end.isoformat(),
        TAG_VALIDATION_ROWS: str(len(result.split.validation)),
        TAG_VALIDATION_POSITIVES: str(int(result.split.validation[result.split.label].sum())),
    }
    if commit:
        tags["mlflow.source.git.commit"] = commit  # the MLflow UI shows this one on the run page
    return tags


def pip_requirements() -> list[str]:
    """The serving environment, pinned to what trained the model.

    Given explicitly: MLflow would otherwise infer them by loading the model in a subprocess on every log.
    """
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")]


@contextlib.contextmanager
def _quiet_dataset_schema_hint() -> Iterator[None]:
    """Silence MLflow's hint about integer columns while it infers the logged datasets' schemas.

    The hint is about serving inputs; here the only integer column is the label of a descriptive dataset.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        yield


# The rows MLflow infers a logged dataset's column types from; which columns may be null is read off every row.
SCHEMA_SAMPLE_ROWS = 1_000
# A logged dataset's digest: the start of its content hash (MLflow's tracking store keeps up to 36 characters).
DATASET_DIGEST_CHARS = 16


def dataset_schema(frame: pd.DataFrame) -> Any:
    """The schema MLflow would infer for ``frame``, in a fraction of the time.

    MLflow tests every value of every column in Python to decide which columns are required (non-null): 7 s for
    a story's training set of 60 features, longer than the model's fit. Here the types come from MLflow's own
    inference on a sample, and a column is optional when any of its rows is null, counted by pandas.
    """
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    sampled = infer_signature(frame.head(SCHEMA_SAMPLE_ROWS)).inputs
    nullable = frame.isna().any()
    return Schema(
        [ColSpec(type=spec.type, name=spec.name, required=not bool(nullable[spec.name])) for spec in sampled.inputs]
    )


def _dataset(frame: pd.DataFrame, result: TrainingResult, name: str) -> Any:
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.pandas_dataset import PandasDataset

    class TrainingSetDataset(PandasDataset):
        @functools.cached_property
        def schema(self) -> Any:
            return dataset_schema(self.df)

    # Note: MLflow 3.17 drops a Delta version of 0 from the source it shows (a falsy check); the version is also
    # in the dataset's name and the run's training_set.version tag.
    source = DeltaDatasetSource(path=result.training_set.path, delta_table_version=result.training_set.version)
    # The digest is the hash of every row (``frame_hash``): MLflow's own hashes the first 10,000 rows but first
    # asks the type of every value of the frame in Python, a second a training set.
    digest = frame_hash(frame)[:DATASET_DIGEST_CHARS]
    return TrainingSetDataset(frame, source=source, targets=result.split.label, name=name, digest=digest)


def log_and_register(
    result: TrainingResult,
    store: MlflowResource,
    dagster_run_id: str | None = None,
    importances: pd.DataFrame | None = None,
) -> RegisteredModel:
    """Log ``result`` as one MLflow run, register it as a new version and point the ``challenger`` alias at it.

    ``importances``: permutation importances if already computed (``importance.permutation_importances``).
    Registration comes last, so a version in the registry always has its complete run behind it.
    """
    import mlflow
    from mlflow.models import infer_signature

    client = store.client()
    experiment_id = store.experiment_id()
    ts = result.training_set
    kind = result.params.model_kind.value
    tags = lineage_tags(result, dagster_run_id)
    trusted = trusted_types_for(result.pipeline)  # fails before anything is logged if a type is not reviewed

    X_validation = result.X_validation
    example = X_validation.head(5)
    signature = infer_signature(X_validation.head(500), result.pipeline.predict_proba(X_validation.head(500)))
    if importances is None:
        importances = importance.permutation_importances(result)

    note = (  # the run's description in the MLflow UI
        f"`{kind}` on training set `{ts.path}` **v{ts.version}** (feature store v{ts.feature_store_version or '?'}): "
        f"trained on snapshots {result.split.train_first_snapshot}..{result.split.train_last_snapshot}, validated on "
        f"{result.split.validation_start}..{result.split.validation_end} (gap {result.split.churn_horizon_days} days)."
    )
    run_tags = {**tags, "mlflow.note.content": note}
    run_name = f"{kind}-training_set-v{ts.version}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=run_tags) as run:
        mlflow.log_params(
            {
                **result.params.model_dump(mode="json"),
                "churn_horizon_days": result.split.churn_horizon_days,
                "numeric_features": ",".join(result.features.numeric),
                "categorical_features": ",".join(result.features.categorical),
            }
        )
        label = result.split.label
        with _quiet_dataset_schema_hint():
            train_ds = _dataset(
                feature_frame(result.split.train, result.features).assign(
                    **{label: result.split.train[label].to_numpy()}
                ),
                result,
                f"training_set-v{ts.version}-train",
            )
            validation_ds = _dataset(
                X_validation.assign(**{label: result.y_validation}), result, f"training_set-v{ts.version}-validation"
            )
            mlflow.log_input(train_ds, context="training")
            mlflow.log_input(validation_ds, context="validation")

        info = mlflow.sklearn.log_model(
            result.pipeline,
            name=MODEL_ARTIFACT,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=trusted,
            signature=signature,
            input_example=example,
            # The pyfunc flavour answers with class probabilities (column 1 = churn), which is what scoring needs.
            pyfunc_predict_fn="predict_proba",
            pip_requirements=pip_requirements(),
            metadata={
                "lineage": tags,
                "features": {"numeric": result.features.numeric, "categorical": result.features.categorical},
            },
        )
        # Linked to the run, the logged model and the validation dataset: the model pages show them too.
        with _quiet_dataset_schema_hint():
            mlflow.log_metrics(result.metrics, model_id=info.model_id, dataset=validation_ds)
        mlflow.log_dict(result.split.describe(), "split.json")
        for artifact, figure in plots.diagnostic_figures(result, importances).items():
            mlflow.log_figure(figure, artifact)
        with tempfile.TemporaryDirectory() as tmp:
            reference = Path(tmp) / Path(REFERENCE_ARTIFACT).name
            reference_sample(result).to_parquet(reference, index=False)
            mlflow.log_artifact(str(reference), str(Path(REFERENCE_ARTIFACT).parent))
            importance_csv = Path(tmp) / IMPORTANCE_ARTIFACT
            importances.to_csv(importance_csv, index=False)
            mlflow.log_artifact(str(importance_csv))
        run_id = run.info.run_id

    version_tags = {**tags, **{f"metric.{k}": repr(v) for k, v in result.metrics.items()}, "run_id": run_id}
    registered = mlflow.register_model(info.model_uri, store.model_name, tags=version_tags)
    client.update_model_version(
        store.model_name,
        registered.version,
        description=(
            f"{kind} trained on {ts.path} v{ts.version} (feature store v{ts.feature_store_version or '?'}); "
            f"validation ROC AUC {result.metrics['roc_auc']:.4f} on {result.split.validation_start}.."
            f"{result.split.validation_end}. Registered {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC."
        ),
    )
    move_alias(store, CHALLENGER, str(registered.version))  # the newest trained version, whatever held it before
    client.set_tag(run_id, "registered_model", f"{store.model_name}/{registered.version}")
    if not client.get_registered_model(store.model_name).description:
        client.update_registered_model(store.model_name, description=REGISTERED_MODEL_DESCRIPTION)
    return RegisteredModel(
        name=store.model_name,
        version=str(registered.version),
        run_id=run_id,
        experiment_id=experiment_id,
        model_uri=f"models:/{store.model_name}/{registered.version}",
        run_url=store.run_url(experiment_id, run_id),
        model_version_url=store.model_version_url(registered.version),
    )
