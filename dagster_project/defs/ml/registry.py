"""The model registry's life: the promotion gate, rollback, the champion for scoring, protected lineage.

Aliases: ``challenger`` marks the most recently trained version, ``champion`` the one production scores with.
Scoring resolves ``models:/<name>@champion`` on every run, so moving the alias (promotion or rollback) takes
effect on the next scoring run with no deployment.

The gate (``run_promotion_gate``) scores the challenger and the current champion on the same rows: the
validation days of the challenger's own training set, rebuilt by Delta time travel from the version recorded in
its tags. The challenger becomes champion if

* its ROC AUC on those rows reaches ``auc_floor``, and
* there is no champion yet, or its ROC AUC is at least the champion's minus ``promotion_tolerance``.

The decision, both AUCs and the reason are written as tags of the challenger's model version (``promotion.*``).
The alias moves only if the champion is still the one the gate judged against (``aliases.move_alias``): a
rollback made while the gate scored stands, and the gate records ``champion_moved`` instead of promoting.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import hashlib
import json
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from dagster_project.defs.ml import tracking
from dagster_project.defs.ml.aliases import AliasMovedError, move_alias, named, version_by_alias
from dagster_project.defs.ml.serialization import load_with_platform_trust, verify_model_dir
from dagster_project.defs.ml.tracking import CHALLENGER, CHAMPION
from dagster_project.defs.ml.training import (
    FeatureColumns,
    churn_probability,
    load_training_set,
    model_input,
    time_split,
)
from dagster_project.lake import offline_store, write_text_atomically
from dagster_project.resources import MlflowResource
from spark_jobs.contract import Contract
from spark_jobs.object_store import Location

TAG_PASSED = "promotion.passed"  # "true" once a version has passed the gate: it may be rolled back to


class NoChampionError(LookupError):
    """No version carries the ``champion`` alias yet."""


class RollbackRefusedError(ValueError):
    """The requested version cannot become champion without ``force``."""


@dataclass(frozen=True)
class PromotionDecision:
    """What the gate decided, and on which evidence."""

    promoted: bool
    decision: str  # promoted | rejected | unchanged | champion_moved (a rollback or promotion while the gate ran)
    reason: str
    challenger_version: str
    challenger_roc_auc: float
    champion_version: str | None  # the champion before the decision
    champion_roc_auc: float | None
    auc_floor: float
    promotion_tolerance: float
    holdout: dict[str, Any]

    def as_tags(self) -> dict[str, str]:
        return {
            "promotion.decision": self.decision,
            "promotion.reason": self.reason,
            "promotion.challenger_roc_auc": repr(self.challenger_roc_auc),
            "promotion.champion_roc_auc": "none" if self.champion_roc_auc is None else repr(self.champion_roc_auc),
            "promotion.champion_version": self.champion_version or "none",
            "promotion.auc_floor": repr(self.auc_floor),
            "promotion.tolerance": repr(self.promotion_tolerance),
            "promotion.holdout": json.dumps(self.holdout, sort_keys=True),
        }


@dataclass(frozen=True)
class ChampionModel:
    """The model production scores with, loaded, and what it is."""

    name: str
    version: str
    run_id: str
    model: Any  # the fitted scikit-learn Pipeline: ``predict_proba`` takes the raw feature columns
    validation_roc_auc: float | None
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def feature_columns(self) -> list[str]:
        return list(self.model.feature_names_in_)

    def churn_probability(self, frame: pd.DataFrame) -> np.ndarray:
        """The positive class's probability per row of ``frame`` (any frame holding the model's features)."""
        return churn_probability(self.model, model_input(frame, self.model))

    def reference_sample(self) -> pd.DataFrame:
        """The validation rows (features, prediction, label) logged with the model, for drift monitoring."""
        import mlflow

        local = mlflow.artifacts.download_artifacts(run_id=self.run_id, artifact_path=tracking.REFERENCE_ARTIFACT)
        return pd.read_parquet(local)


def decide_promotion(
    challenger_auc: float, champion_auc: float | None, auc_floor: float, tolerance: float
) -> tuple[bool, str]:
    """The gate's rule, on two numbers: promote, and why (or why not)."""
    if not np.isfinite(challenger_auc) or challenger_auc < auc_floor:
        return False, f"challenger ROC AUC {challenger_auc:.4f} is below the floor {auc_floor:.4f}"
    if champion_auc is None:
        return True, f"no champion yet and the challenger clears the floor ({challenger_auc:.4f} >= {auc_floor:.4f})"
    bar = champion_auc - tolerance
    if challenger_auc >= bar:
        return True, (
            f"challenger ROC AUC {challenger_auc:.4f} >= champion {champion_auc:.4f} - tolerance {tolerance:.4f} "
            f"and clears the floor {auc_floor:.4f}"
        )
    return False, (
        f"challenger ROC AUC {challenger_auc:.4f} trails the champion's {champion_auc:.4f} by more than the "
        f"tolerance {tolerance:.4f}"
    )


def version_artifact(store: MlflowResource, version: str, artifact_path: str) -> Path | None:
    """A file the training run of registered ``version`` logged (downloaded), or None if it logged none there."""
    import mlflow

    client = store.client()
    run_id = client.get_model_version(store.model_name, str(version)).run_id
    folder = str(Path(artifact_path).parent)
    logged = {a.path for a in client.list_artifacts(run_id, None if folder == "." else folder)}
    if artifact_path not in logged:
        return None
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path))


def key_features(store: MlflowResource, version: str, count: int) -> list[str]:
    """The ``count`` most important features of registered ``version`` by the permutation importances its training
    run logged, most important first; none if it logged none."""
    local = version_artifact(store, version, tracking.IMPORTANCE_ARTIFACT) if count else None
    if local is None:
        return []
    importances = pd.read_csv(local)
    ranked = importances[importances["importance_mean"] > 0].sort_values("importance_mean", ascending=False)
    return [str(name) for name in ranked["feature"].head(count)]


def model_features(store: MlflowResource, version: str) -> FeatureColumns:
    """The features registered ``version`` was trained on and how it encoded each, as its training run logged them
    (``numeric_features``, ``categorical_features``): drift monitoring compares exactly these, with these kinds."""
    client = store.client()
    run_id = client.get_model_version(store.model_name, str(version)).run_id
    params = client.get_run(run_id).data.params
    if "numeric_features" not in params or "categorical_features" not in params:
        raise KeyError(f"the training run of version {version} logged no numeric_features/categorical_features")

    def names(value: str) -> list[str]:
        return [n for n in value.split(",") if n]

    return FeatureColumns(numeric=names(params["numeric_features"]), categorical=names(params["categorical_features"]))


@contextlib.contextmanager
def verified_model(store: MlflowResource, version: str) -> Iterator[Path]:
    """The model folder of registered ``version``, downloaded and checked against the platform's trust list.

    Raises ``serialization.UntrustedArtifactError`` (naming the version and what it asks for) before anything of
    the model is loaded. The folder is deleted on exit.
    """
    import mlflow

    store.client()
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{store.model_name}/{version}", dst_path=tmp))
        verify_model_dir(local, f"{store.model_name} version {version}")
        yield local


# Models loaded in this process, by the content of their verified folder, the most recently used last: a process
# that loads the same version night after night (the main command's story, the prediction service) deserializes it
# once. Every load still downloads and verifies the folder; only identical bytes find their model here.
LOADED_MODELS_KEPT = 4
_loaded_models: collections.OrderedDict[str, Any] = collections.OrderedDict()
_loaded_models_lock = threading.Lock()


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def load_version(store: MlflowResource, version: str) -> Any:
    """Load a registered version as the scikit-learn pipeline, through the registry like production does.

    With the platform's trust list, never the one in the version's MLmodel (``serialization``): the gate, scoring
    and monitoring all load through here. The pipeline is shared with every caller that loads the same bytes:
    they predict with it and never change it.
    """
    with verified_model(store, version) as local:
        digest = _folder_digest(local)
        with _loaded_models_lock:
            if digest in _loaded_models:
                _loaded_models.move_to_end(digest)
                return _loaded_models[digest]
        model = load_with_platform_trust(local)
    with _loaded_models_lock:
        _loaded_models[digest] = model
        while len(_loaded_models) > LOADED_MODELS_KEPT:
            _loaded_models.popitem(last=False)
    return model


def holdout_for(version: Any, contract: Contract) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """The validation rows of a model version's own training set, rebuilt from the lineage in its tags."""
    tags = version.tags
    try:
        path = tags[tracking.TAG_TRAINING_SET_PATH]
        ts_version = int(tags[tracking.TAG_TRAINING_SET_VERSION])
        validation_days = int(tags[tracking.TAG_VALIDATION_DAYS])
        horizon = int(tags[tracking.TAG_HORIZON])
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"model version {version.version} lacks the lineage tags to rebuild its holdout: {error}"
        ) from error
    training_set = load_training_set(path, contract, ts_version)
    split = time_split(training_set.frame, validation_days, horizon, contract)
    description = {
        "training_set": path,
        "training_set_version": ts_version,
        "start": split.validation_start.isoformat(),
        "end": split.validation_end.isoformat(),
        "rows": len(split.validation),
        "positives": int(split.validation[contract.label].sum()),
    }
    return split.validation, split.validation[contract.label].to_numpy(), description


def score_auc(model: Any, rows: pd.DataFrame, y: np.ndarray) -> float:
    """ROC AUC of ``model`` on ``rows``, fed exactly the columns the model was fitted on."""
    X = model_input(rows, model)
    return float(roc_auc_score(y, churn_probability(model, X)))


def run_promotion_gate(
    store: MlflowResource,
    contract: Contract,
    auc_floor: float,
    tolerance: float,
    lake_root: str | Path | None = None,
    dagster_run_id: str | None = None,
) -> PromotionDecision:
    """Decide whether the ``challenger`` replaces the ``champion``; move the alias if so; record why.

    ``lake_root``: where to update the protected-versions file (skipped if None).
    """
    client = store.client()
    challenger = version_by_alias(store, CHALLENGER)
    if challenger is None:
        raise LookupError(
            f"registered model {store.model_name!r} has no {CHALLENGER!r} version: materialize ml/churn_model first"
        )
    champion = version_by_alias(store, CHAMPION)
    rows, y, holdout = holdout_for(challenger, contract)
    challenger_auc = score_auc(load_version(store, challenger.version), rows, y)

    champion_auc: float | None = None
    notes: list[str] = []
    if champion is not None and champion.version == challenger.version:
        promoted, decision = False, "unchanged"
        reason = f"version {challenger.version} is already the champion"
        champion_auc = challenger_auc
    else:
        if champion is not None:
            try:
                champion_auc = score_auc(load_version(store, champion.version), rows, y)
            except KeyError as error:  # the features changed since the champion was trained
                notes.append(f"champion v{champion.version} cannot score the current features ({error})")
            last_label = champion.tags.get(tracking.TAG_TRAIN_LAST_LABEL_END)
            if last_label and dt.datetime.fromisoformat(last_label).date() > dt.date.fromisoformat(holdout["start"]):
                notes.append(
                    f"champion v{champion.version} was trained on labels up to {last_label}, inside the "
                    "holdout: its AUC is optimistic"
                )
        promoted, reason = decide_promotion(challenger_auc, champion_auc, auc_floor, tolerance)
        if promoted and champion is not None and champion_auc is None:
            reason = (
                f"the champion could not be scored, so the floor alone decides: {challenger_auc:.4f} >= {auc_floor:.4f}"
            )
        decision = "promoted" if promoted else "rejected"
    if notes:
        reason = f"{reason}; note: {'; '.join(notes)}"

    result = PromotionDecision(
        promoted=promoted,
        decision=decision,
        reason=reason,
        challenger_version=str(challenger.version),
        challenger_roc_auc=challenger_auc,
        champion_version=None if champion is None else str(champion.version),
        champion_roc_auc=champion_auc,
        auc_floor=auc_floor,
        promotion_tolerance=tolerance,
        holdout=holdout,
    )
    if promoted:
        try:
            move_alias(store, CHAMPION, result.challenger_version, expected=result.champion_version)
        except AliasMovedError as moved:  # the champion changed while we scored: that change wins
            result = _not_promoted_after_all(result, moved)
    now = _now()
    if result.decision == "unchanged":
        # The verdict that made it champion stays on record; only the re-check is noted.
        client.set_model_version_tag(store.model_name, challenger.version, "promotion.rechecked_at", now)
    else:
        stamp = {"promotion.decided_at": now, "promotion.dagster_run_id": dagster_run_id or "none"}
        for key, value in {**result.as_tags(), **stamp}.items():
            client.set_model_version_tag(store.model_name, challenger.version, key, value)
    if result.promoted:
        # Durable: a later verdict on the same version (a re-run of the gate) does not erase that it once passed.
        client.set_model_version_tag(store.model_name, challenger.version, TAG_PASSED, "true")
        client.set_model_version_tag(store.model_name, challenger.version, "champion.since", now)
        if champion is not None:
            client.set_model_version_tag(store.model_name, champion.version, "champion.replaced_by", challenger.version)
    if lake_root is not None:
        write_protected_versions(store, lake_root)
    return result


def _not_promoted_after_all(result: PromotionDecision, moved: AliasMovedError) -> PromotionDecision:
    """The gate's decision once the champion turned out to have moved while it scored (a rollback, another gate)."""
    challenger = result.challenger_version
    if moved.found == challenger:  # another gate promoted this very version meanwhile
        reason = f"version {challenger} became champion while the gate ran (another run of the gate)"
        return replace(result, promoted=False, decision="unchanged", reason=reason)
    reason = (
        f"champion moved from {named(moved.expected)} to {named(moved.found)} while the gate ran; v{challenger} was "
        f"not promoted and {named(moved.found)} stays champion (re-run ml/champion_model to judge v{challenger} "
        f"against it). The verdict against {named(moved.expected)} was: {result.reason}"
    )
    return replace(result, promoted=False, decision="champion_moved", reason=reason)


@dataclass(frozen=True)
class RollbackResult:
    name: str
    version: str
    previous_version: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rollback_champion(
    store: MlflowResource,
    version: int | str,
    reason: str = "manual rollback",
    force: bool = False,
    lake_root: str | Path | None = None,
) -> RollbackResult:
    """Point ``champion`` at an earlier version; the next scoring run uses it.

    Only versions that once passed the promotion gate qualify, unless ``force``: a rollback should not put a
    model into production that the gate refused (or never saw).
    """
    from mlflow.exceptions import MlflowException

    client = store.client()
    version = str(version)
    try:
        target = client.get_model_version(store.model_name, version)
    except MlflowException as error:
        known = sorted(int(v.version) for v in client.search_model_versions(f"name='{store.model_name}'"))
        raise LookupError(f"{store.model_name!r} has no version {version}; versions: {known}") from error
    if target.tags.get(TAG_PASSED) != "true" and not force:
        decision = target.tags.get("promotion.decision", "none")
        raise RollbackRefusedError(
            f"version {version} never passed the promotion gate (promotion.decision={decision}); "
            "pass force=True (--force) to make it champion anyway"
        )
    # The operator names the target: it replaces whatever is champion, read under the same lock the gate takes.
    previous = move_alias(store, CHAMPION, version)
    now = _now()
    for key, value in {
        "champion.since": now,
        "rollback.at": now,
        "rollback.from_version": previous or "none",
        "rollback.reason": reason,
        "rollback.forced": str(force).lower(),
    }.items():
        client.set_model_version_tag(store.model_name, version, key, value)
    if previous is not None and previous != version:
        client.set_model_version_tag(store.model_name, previous, "champion.replaced_by", version)
    if lake_root is not None:
        write_protected_versions(store, lake_root)
    return RollbackResult(name=store.model_name, version=version, previous_version=previous, reason=reason)


def load_champion(store: MlflowResource) -> ChampionModel:
    """The current champion, loaded: what the scoring and monitoring assets use.

    The alias is resolved to a version once and that version is loaded, so the version recorded with the
    scores is the one that made them even if the alias moves meanwhile.
    """
    champion = version_by_alias(store, CHAMPION)
    if champion is None:
        raise NoChampionError(
            f"registered model {store.model_name!r} has no {CHAMPION!r} at {store.tracking_uri}: materialize "
            "ml/churn_model and ml/champion_model (the training set must exist), or roll back to a version with "
            "`python -m dagster_project.defs.ml.rollback --version N`"
        )
    return _loaded(store, champion)


def load_challenger(store: MlflowResource, champion_version: str | None = None) -> ChampionModel | None:
    """The ``challenger`` loaded, when there is one to shadow: None when no version holds the alias, or when it is
    the champion itself (a promoted challenger keeps the alias: it was the most recently trained)."""
    challenger = version_by_alias(store, CHALLENGER)
    if challenger is None or str(challenger.version) == champion_version:
        return None
    return _loaded(store, challenger)


def _loaded(store: MlflowResource, version: Any) -> ChampionModel:
    auc = version.tags.get("metric.roc_auc")
    return ChampionModel(
        name=store.model_name,
        version=str(version.version),
        run_id=version.run_id,
        model=load_version(store, version.version),
        validation_roc_auc=None if auc is None else float(auc),
        tags=dict(version.tags),
    )


@dataclass(frozen=True)
class ValidationAuc:
    """The validation ROC AUC a registered version was trained to, and the counts it was measured on (None when
    the version predates their tags): with them, the AUC's own standard error."""

    roc_auc: float
    positives: int | None = None
    negatives: int | None = None


def validation_auc(store: MlflowResource, version: str) -> ValidationAuc | None:
    """The validation ROC AUC of ``version`` (its ``metric.roc_auc`` tag) with its counts, if recorded."""
    tags = store.client().get_model_version(store.model_name, str(version)).tags
    auc = tags.get("metric.roc_auc")
    if auc is None:
        return None
    rows, positives = tags.get(tracking.TAG_VALIDATION_ROWS), tags.get(tracking.TAG_VALIDATION_POSITIVES)
    if rows is None or positives is None:
        return ValidationAuc(float(auc))
    return ValidationAuc(float(auc), int(positives), int(rows) - int(positives))


def protected_versions(store: MlflowResource) -> dict[str, list[int]]:
    """The offline-store versions that registered models still need readable (Delta VACUUM must keep them).

    Kept: the versions behind every alias (champion, challenger) and behind every version that ever passed the
    gate, since any of those can be rolled back to.
    """
    client = store.client()
    aliased = {str(v) for v in _aliases(store).values()}
    training_set: set[int] = set()
    feature_snapshots: set[int] = set()
    for mv in client.search_model_versions(f"name='{store.model_name}'"):
        if str(mv.version) not in aliased and mv.tags.get(TAG_PASSED) != "true":
            continue
        for key, bucket in (
            (tracking.TAG_TRAINING_SET_VERSION, training_set),
            (tracking.TAG_FEATURE_STORE_VERSION, feature_snapshots),
        ):
            value = mv.tags.get(key)
            if value is not None and value.isdigit():
                bucket.add(int(value))
    return {"feature_snapshots": sorted(feature_snapshots), "training_set": sorted(training_set)}


def write_protected_versions(store: MlflowResource, lake_root: Location) -> Location:
    """Write ``<lake_root>/offline_store/_protected_versions.json`` atomically (the maintenance job reads it)."""
    payload = json.dumps(protected_versions(store), indent=2, sort_keys=True)
    return write_text_atomically(offline_store(lake_root).protected_versions_file, payload + "\n")


def _aliases(store: MlflowResource) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(store.client().get_registered_model(store.model_name).aliases)
    except MlflowException:
        return {}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
