"""Training the churn model: pure Python, no Dagster and no MLflow.

``train_from_training_set`` reads one version of the Delta training set, splits it by time, fits a scikit-learn
``Pipeline`` whose preprocessing lives inside the pipeline (so scoring needs nothing but the model), and returns
the fitted pipeline with its validation metrics. The Dagster asset and any test or notebook call the same function.

The split, and why it looks the way it does
-------------------------------------------
Every row is a prediction made at ``prediction_time`` from the features of ``feature_snapshot_date``; its label
says whether the customer cancelled within the next ``churn_horizon_days`` days. So a row's label is only known
``churn_horizon_days`` after its prediction time. A random split across time would let the model learn from
rows that sit in the future of the rows it is validated on; even a plain "older rows train, newer rows validate"
split leaks, because the label windows of the last training rows run on into the validation period (the model
would learn from cancellations that happen while validation predictions are being made).

Hence:

* validation = the rows whose ``feature_snapshot_date`` falls in the last ``validation_days`` days of the table;
* training   = the rows whose whole label window closes before the validation period starts:
  ``prediction_time + churn_horizon_days <= start of the first validation day``.

Between the two there is a gap of ``churn_horizon_days`` days whose rows are used for neither. This is what
happens in production too: on the day a model is trained, the most recent ``churn_horizon_days`` days of
predictions have no mature label yet.

Reproducibility: rows are put in a canonical order before anything else (a Delta scan returns files in no
guaranteed order), every random step takes ``seed``, and the metrics of two trainings on the same table version
with the same parameters are identical.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from dagster_project import lake
from spark_jobs.contract import DBT_MODEL_CHECKSUM, FEATURE_SNAPSHOT_DATE, LABEL_SNAPSHOT_DATE, Contract

# The column of the drift reference sample (``reference_sample``) that holds the model's probability.
PREDICTION = "prediction"
# The names of the two sides of the pipeline's preprocessing (``build_pipeline``): how a fitted model tells which
# of its inputs it took as numbers and which as categories.
NUMERIC_STEP, CATEGORICAL_STEP = "numeric", "categorical"
# HistGradientBoosting bins at most 255 values per feature; rarer categories beyond that are pooled.
HGB_MAX_BINS = 255


class ModelKind(StrEnum):
    """The estimators the pipeline can end in."""

    hist_gradient_boosting = "hist_gradient_boosting"  # the default
    logistic_regression = "logistic_regression"  # the baseline


class TrainingParams(BaseModel):
    """Everything that decides a trained model besides its data. Logged to MLflow as run parameters."""

    model_kind: ModelKind = Field(ModelKind.hist_gradient_boosting, description="estimator at the end of the pipeline")
    validation_days: int = Field(14, ge=1, description="the most recent N days of feature snapshots validate")
    churn_horizon_days: int | None = Field(
        None,
        ge=0,
        description="label horizon, and so the gap between training labels and validation; "
        "None = the training set's own (commit metadata), else the contract's",
    )
    seed: int = Field(42, description="seeds every random step: the model, the samples, permutation importance")
    # HistGradientBoostingClassifier
    max_iter: int = Field(200, ge=1, description="boosting iterations")
    learning_rate: float = Field(0.1, gt=0)
    max_leaf_nodes: int = Field(31, ge=2)
    min_samples_leaf: int = Field(20, ge=1)
    l2_regularization: float = Field(0.0, ge=0)
    # LogisticRegression
    logistic_c: float = Field(1.0, gt=0, description="inverse regularization strength C of the logistic baseline")
    # A negative control: permute the training labels (never the validation ones). Such a model has learned
    # nothing, and the promotion gate must refuse it.
    shuffle_train_labels: bool = False
    reference_sample_rows: int = Field(5000, ge=1, description="rows of the drift-monitoring reference sample")
    importance_sample_rows: int = Field(2000, ge=1, description="validation rows for permutation importance")
    importance_repeats: int = Field(3, ge=1)


@dataclass(frozen=True)
class TrainingSetVersion:
    """One version of the Delta training set and the lineage its commit carries."""

    path: str
    version: int
    commit_metadata: dict[str, Any]
    contract: Contract = field(repr=False)  # the names its columns were read by
    frame: pd.DataFrame = field(repr=False)

    @property
    def feature_store_version(self) -> str | None:
        value = self.commit_metadata.get("feature_store_version")
        return None if value is None else str(value)

    @property
    def dagster_run_id(self) -> str | None:
        value = self.commit_metadata.get("dagster_run_id")
        return None if value is None else str(value)

    @property
    def dbt_model_checksum(self) -> str | None:
        """The checksum of the dbt model behind the features, as the commit names it (None: unknown)."""
        value = self.commit_metadata.get(DBT_MODEL_CHECKSUM)
        return str(value) if value else None

    @property
    def churn_horizon_days(self) -> int | None:
        value = self.commit_metadata.get("churn_horizon_days")
        return None if value is None else int(value)


@dataclass(frozen=True)
class TimeSplit:
    """The rows that train and the rows that validate, and the dates that separate them."""

    train: pd.DataFrame = field(repr=False)
    validation: pd.DataFrame = field(repr=False)
    label: str  # the label column of both
    churn_horizon_days: int
    train_first_snapshot: dt.date
    train_last_snapshot: dt.date
    train_last_label_end: dt.datetime  # the latest moment any training label looks at
    validation_start: dt.date
    validation_end: dt.date
    gap_rows: int  # rows between the two, used for neither

    def describe(self) -> dict[str, Any]:
        return {
            "train_rows": len(self.train),
            "train_positive_rate": round(float(self.train[self.label].mean()), 6),
            "train_first_snapshot": self.train_first_snapshot.isoformat(),
            "train_last_snapshot": self.train_last_snapshot.isoformat(),
            "train_last_label_end": self.train_last_label_end.isoformat(),
            "validation_rows": len(self.validation),
            "validation_positive_rate": round(float(self.validation[self.label].mean()), 6),
            "validation_start": self.validation_start.isoformat(),
            "validation_end": self.validation_end.isoformat(),
            "gap_rows": self.gap_rows,
            "churn_horizon_days": self.churn_horizon_days,
        }


@dataclass(frozen=True)
class FeatureColumns:
    numeric: list[str]
    categorical: list[str]

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical]


@dataclass(frozen=True)
class TrainingResult:
    """A fitted pipeline, how it did on the validation rows, and everything needed to log and reproduce it."""

    pipeline: Pipeline = field(repr=False)
    params: TrainingParams
    training_set: TrainingSetVersion = field(repr=False)
    features: FeatureColumns
    split: TimeSplit = field(repr=False)
    metrics: dict[str, float]
    validation_scores: np.ndarray = field(repr=False)  # churn probability of each validation row
    training_data_hash: str  # content hash of the rows and columns the model was fitted on

    @property
    def X_validation(self) -> pd.DataFrame:
        return feature_frame(self.split.validation, self.features)

    @property
    def y_validation(self) -> np.ndarray:
        return self.split.validation[self.split.label].to_numpy()


def parse_commit_metadata(commit: dict[str, Any]) -> dict[str, Any]:
    """The lineage a writer put in a Delta commit: Spark's ``userMetadata`` JSON, or delta-rs custom keys."""
    metadata: dict[str, Any] = {}
    user = commit.get("userMetadata")
    if isinstance(user, str) and user.strip():
        try:
            parsed = json.loads(user)
        except json.JSONDecodeError:
            parsed = {"userMetadata": user}
        if isinstance(parsed, dict):
            metadata.update(parsed)
    elif isinstance(user, dict):
        metadata.update(user)
    for key in ("feature_store_version", "dagster_run_id", "churn_horizon_days", DBT_MODEL_CHECKSUM):
        if key in commit and key not in metadata:
            metadata[key] = commit[key]
    return metadata


def commit_metadata(path: str, version: int) -> dict[str, Any]:
    """The lineage in the commit that made ``version`` of the Delta table at ``path`` ({} if not found).

    Looked up in the latest table's history: delta-rs 1.6 numbers the history of a time-travelled table relative
    to the loaded version (it would return the newest commit's metadata under our number).
    """
    commit = next((c for c in lake.delta_table(path).history() if c.get("version") == version), {})
    return parse_commit_metadata(commit)


def row_order(contract: Contract) -> list[str]:
    """The canonical row order of a training set: one row per entity and prediction time."""
    return [contract.prediction_time, *contract.entity]


def load_training_set(path: str, contract: Contract, version: int | None = None) -> TrainingSetVersion:
    """Read ``version`` of the Delta training set (the latest if None) with delta-rs: no JVM needed.

    Rows come back in the canonical order, so the same version always yields the same frame.
    """
    table = lake.delta_table(path, version=version)
    resolved = table.version()
    metadata = commit_metadata(path, resolved)
    frame = lake.delta_to_arrow(table, path).to_pandas()
    missing = [c for c in contract.training_set_keys if c not in frame.columns]
    if missing:
        raise ValueError(f"training set {path} v{resolved} lacks the contract's columns {missing}")
    label, when = contract.label, contract.prediction_time
    unlabelled = int(frame[label].isna().sum())
    if unlabelled:
        raise ValueError(f"training set {path} v{resolved} has {unlabelled} rows without a label ({label} is null)")
    prediction_time = pd.to_datetime(frame[when])
    if prediction_time.dt.tz is not None:  # compare in naive UTC, as Spark writes timestamps without a zone
        prediction_time = prediction_time.dt.tz_convert("UTC").dt.tz_localize(None)
    frame[when] = prediction_time
    for column in (FEATURE_SNAPSHOT_DATE, LABEL_SNAPSHOT_DATE):
        frame[column] = pd.to_datetime(frame[column]).dt.date
    frame[label] = frame[label].astype("int64")
    frame = frame.sort_values(row_order(contract), kind="mergesort").reset_index(drop=True)
    return TrainingSetVersion(path=path, version=resolved, commit_metadata=metadata, contract=contract, frame=frame)


def declared_features(contract: Contract, frame: pd.DataFrame | None = None) -> FeatureColumns:
    """The model's features and how each is encoded, as the contract declares them (the feature model's column
    meta). With ``frame``, checks that it holds them, and that no categorical one is of a type that cannot be a
    category nor a numeric one a type that cannot be a number (dates, nested values), naming the columns."""
    features = FeatureColumns(numeric=contract.numeric_features, categorical=contract.categorical_features)
    if frame is None:
        return features
    missing = [c for c in features.all if c not in frame.columns]
    if missing:
        raise KeyError(f"the rows lack the declared features {missing} of {contract.features_model}")
    unusable = [
        f"{c} ({frame[c].dtype})"
        for c in features.numeric
        if not (pd.api.types.is_bool_dtype(frame[c].dtype) or pd.api.types.is_numeric_dtype(frame[c].dtype))
        and not (pd.api.types.is_object_dtype(frame[c].dtype) and frame[c].isna().all())
    ]
    if unusable:
        raise TypeError(
            f"features declared numeric in {contract.features_model} hold other types: {unusable}; declare them "
            "kind: categorical, or cast them in the model"
        )
    return features


def fitted_features(model: Any) -> FeatureColumns:
    """The features a fitted pipeline (``build_pipeline``) takes, and how it encodes each, read from the pipeline
    itself: what scoring and drift monitoring must feed it, whatever the contract says today."""
    preprocess = getattr(model, "named_steps", {}).get("preprocess")
    if preprocess is None or not hasattr(preprocess, "transformers_"):
        raise TypeError("the model is not a fitted pipeline of build_pipeline: its features and kinds are unknown")
    kinds = {
        name: list(columns) for name, _, columns in preprocess.transformers_ if name in (NUMERIC_STEP, CATEGORICAL_STEP)
    }
    return FeatureColumns(numeric=kinds.get(NUMERIC_STEP, []), categorical=kinds.get(CATEGORICAL_STEP, []))


def feature_frame(frame: pd.DataFrame, features: FeatureColumns) -> pd.DataFrame:
    """The model's input: the feature columns only, numbers as float64 and categories as object.

    Numbers are widened to float64 so the logged signature accepts a missing value in any of them (MLflow refuses
    NaN in a column the signature declares as integer).
    """
    out = frame[features.all].copy()
    for column in features.numeric:
        out[column] = out[column].astype("float64")
    for column in features.categorical:
        out[column] = out[column].astype("object").where(out[column].notna(), None)
    return out


def model_input(frame: pd.DataFrame, model: Any) -> pd.DataFrame:
    """``frame``'s columns a fitted model expects, in its order, typed as at training: what to feed a loaded model.

    Feature snapshots carry counts as integers; the model (and its MLflow signature) takes every number as
    float64, and MLflow's schema enforcement refuses to narrow int64 to float64 by itself.
    """
    features = fitted_features(model)
    missing = [c for c in features.all if c not in frame.columns]
    if missing:
        raise KeyError(
            f"the rows lack features the model was trained on: {missing}; the features changed since it was "
            "trained: retrain it (the retrain job)"
        )
    return feature_frame(frame, features)[list(model.feature_names_in_)]


def time_split(frame: pd.DataFrame, validation_days: int, churn_horizon_days: int, contract: Contract) -> TimeSplit:
    """Split by time with a label-horizon gap (see the module docstring). Raises if either side is unusable."""
    label = contract.label
    snapshots = frame[FEATURE_SNAPSHOT_DATE]
    last = max(snapshots)
    validation_start = last - dt.timedelta(days=validation_days - 1)
    is_validation = snapshots >= validation_start
    label_end = frame[contract.prediction_time] + pd.Timedelta(days=churn_horizon_days)
    is_train = label_end <= pd.Timestamp(validation_start)
    train, validation = frame[is_train], frame[is_validation]
    span = f"{min(snapshots)}..{last}"
    if train.empty:
        raise ValueError(
            f"no training rows: the training set spans {span}, but training labels must close "
            f"{churn_horizon_days} days before the {validation_days} validation days start ({validation_start}); "
            f"build a training set over more days or lower validation_days"
        )
    for name, part in (("training", train), ("validation", validation)):
        if part[label].nunique() < 2:
            raise ValueError(f"the {name} rows ({len(part)}, {span}) hold a single class: no model can be assessed")
    return TimeSplit(
        train=train.reset_index(drop=True),
        validation=validation.reset_index(drop=True),
        label=label,
        churn_horizon_days=churn_horizon_days,
        train_first_snapshot=min(train[FEATURE_SNAPSHOT_DATE]),
        train_last_snapshot=max(train[FEATURE_SNAPSHOT_DATE]),
        train_last_label_end=label_end[is_train].max().to_pydatetime(),
        validation_start=validation_start,
        validation_end=last,
        gap_rows=int((~is_train & ~is_validation).sum()),
    )


def build_pipeline(params: TrainingParams, features: FeatureColumns) -> Pipeline:
    """Preprocessing and estimator in one scikit-learn ``Pipeline``: scoring feeds it raw feature columns.

    Both branches cope with what production brings: missing values, and categories never seen in training
    (encoded as unknown rather than failing).
    """
    if params.model_kind is ModelKind.hist_gradient_boosting:
        # Trees need no scaling and handle NaN natively; categories become ordinal codes that the booster treats
        # as categorical. Unknown and missing categories map to -1, which the booster reads as missing.
        categorical = OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=-1,
            encoded_missing_value=-1,
            max_categories=HGB_MAX_BINS - 1,
            dtype=np.float64,
        )
        preprocess = ColumnTransformer(
            [(NUMERIC_STEP, "passthrough", features.numeric), (CATEGORICAL_STEP, categorical, features.categorical)],
            verbose_feature_names_out=False,
        )
        estimator = HistGradientBoostingClassifier(
            max_iter=params.max_iter,
            learning_rate=params.learning_rate,
            max_leaf_nodes=params.max_leaf_nodes,
            min_samples_leaf=params.min_samples_leaf,
            l2_regularization=params.l2_regularization,
            categorical_features=[False] * len(features.numeric) + [True] * len(features.categorical),
            # Early stopping would carve its own random validation split out of the training rows: across time,
            # exactly what the time split avoids. The iteration count is a parameter instead.
            early_stopping=False,
            random_state=params.seed,
        )
    else:
        numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        categorical = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        preprocess = ColumnTransformer(
            [(NUMERIC_STEP, numeric, features.numeric), (CATEGORICAL_STEP, categorical, features.categorical)],
            verbose_feature_names_out=False,
        )
        estimator = LogisticRegression(C=params.logistic_c, max_iter=1000, random_state=params.seed)
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def recall_at_top_fraction(y_true: np.ndarray, scores: np.ndarray, fraction: float = 0.1) -> float:
    """Share of all positives found among the ``fraction`` of rows with the highest scores.

    Ties are broken by row order (a stable sort), so the figure is deterministic.
    """
    positives = int(np.sum(y_true))
    if positives == 0:
        return float("nan")
    top = max(1, math.ceil(fraction * len(scores)))
    order = np.argsort(-scores, kind="stable")[:top]
    return float(np.sum(y_true[order]) / positives)


def evaluate(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The metrics logged for every model and compared by the promotion gate (on predicted probabilities)."""
    return {
        "roc_auc": float(roc_auc_score(y_true, scores)),
        "pr_auc": float(average_precision_score(y_true, scores)),
        "log_loss": float(log_loss(y_true, scores, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, scores)),
        "recall_top_decile": recall_at_top_fraction(y_true, scores, 0.1),
    }


def churn_probability(model: Any, X: pd.DataFrame) -> np.ndarray:
    """The positive class's probability from any fitted classifier (or pipeline) with ``predict_proba``."""
    classes = list(model.classes_)
    return np.asarray(model.predict_proba(X))[:, classes.index(1)]


def frame_hash(frame: pd.DataFrame) -> str:
    """A content hash of a frame (values, column names and order): equal frames, equal hashes."""
    digest = hashlib.sha256()
    digest.update(json.dumps([str(c) for c in frame.columns]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def resolve_horizon(params: TrainingParams, training_set: TrainingSetVersion, default: int | None = None) -> int:
    """The label horizon: set explicitly, else the training set's own, else ``default`` (the contract's)."""
    candidates = (params.churn_horizon_days, training_set.churn_horizon_days, default)
    horizon = next((h for h in candidates if h is not None), None)  # 0 is a horizon, not a missing one
    if horizon is None:
        raise ValueError(
            f"no label horizon for training set v{training_set.version}: its commit names none; pass "
            "churn_horizon_days in the training parameters"
        )
    return int(horizon)


def fit_on_split(
    training_set: TrainingSetVersion, params: TrainingParams, horizon_days: int | None = None
) -> TrainingResult:
    """Split ``training_set`` by time, fit the pipeline on the older rows and score the recent ones."""
    contract = training_set.contract
    horizon = resolve_horizon(params, training_set, horizon_days)
    split = time_split(training_set.frame, params.validation_days, horizon, contract)
    features = declared_features(contract, training_set.frame)
    X_train = feature_frame(split.train, features)
    y_train = split.train[contract.label].to_numpy()
    if params.shuffle_train_labels:
        y_train = np.random.default_rng(params.seed).permutation(y_train)
    pipeline = build_pipeline(params, features).fit(X_train, y_train)
    X_validation = feature_frame(split.validation, features)
    scores = churn_probability(pipeline, X_validation)
    return TrainingResult(
        pipeline=pipeline,
        params=params,
        training_set=training_set,
        features=features,
        split=split,
        metrics=evaluate(split.validation[contract.label].to_numpy(), scores),
        validation_scores=scores,
        training_data_hash=frame_hash(X_train.assign(**{contract.label: y_train})),
    )


def train_from_training_set(
    path: str, contract: Contract, version: int | None = None, params: TrainingParams | None = None
) -> TrainingResult:
    """Train a model on ``version`` (the latest if None) of the Delta training set at ``path``.

    Pure Python: no Dagster, no MLflow. ``result.metrics["roc_auc"]`` is the validation ROC AUC.
    """
    return fit_on_split(load_training_set(path, contract, version), params or TrainingParams(), contract.horizon_days)


def reference_sample(result: TrainingResult, rows: int | None = None) -> pd.DataFrame:
    """A seeded sample of the validation rows with the model's prediction: the reference for drift monitoring.

    The validation window is the most recent data the model was judged on before it could be deployed, so a night
    is compared with how the world looked when the model was chosen. The training rows are older by at least the
    label horizon, and on a young history (the simulator's first months) their 30- and 90-day windows are still
    filling: against them every later night would look drifted.

    Columns: the model's features (as the model sees them), ``prediction`` (the probability), the label, and
    the snapshot date the features come from.
    """
    contract, recent = result.training_set.contract, result.split.validation
    n = min(rows or result.params.reference_sample_rows, len(recent))
    sample = recent.sample(n=n, random_state=result.params.seed).sort_values(row_order(contract), kind="mergesort")
    X = feature_frame(sample, result.features)
    return X.assign(
        **{PREDICTION: churn_probability(result.pipeline, X)},
        **{
            contract.label: sample[contract.label].to_numpy(),
            FEATURE_SNAPSHOT_DATE: sample[FEATURE_SNAPSHOT_DATE].to_numpy(),
        },
    ).reset_index(drop=True)
