"""The model assets: ``ml/churn_model`` (train, log, register as challenger) and ``ml/champion_model`` (the gate).

Both come from one multi-asset so a normal run trains and judges in one go, yet either can be materialized alone:
``churn_model`` alone registers a challenger and leaves the decision pending; ``champion_model`` alone re-runs the
gate on the current challenger. ``champion_model`` is materialized only when the champion changes (a promotion
here, or the ``rollback_champion`` job), so its history in the UI is the champion's history and downstream
scoring is never re-triggered by a refused challenger.
"""

import time
from collections.abc import Iterator

import dagster as dg
import pandas as pd

from dagster_project import asset_keys
from dagster_project import lake as lake_layout
from dagster_project.defs.ml import importance, registry, tracking
from dagster_project.defs.ml.training import TrainingParams, fit_on_split, load_training_set
from dagster_project.resources import ContractResource, LakeResource, MlflowResource, ThresholdsResource

CHAMPION_CHECK = "champion_serves"
# Runs that move registry aliases share this pool. The moves themselves are safe without it (compare-and-set under
# the registry lock, `aliases.py`, which the command line takes too); limiting the pool to one slot
# (`dagster instance concurrency set model_registry 1`) also keeps two gates from scoring side by side for nothing.
REGISTRY_POOL = "model_registry"


class ChurnModelConfig(dg.Config, TrainingParams):
    """How to train the churn model (every field is logged as an MLflow parameter)."""

    training_set_version: int | None = None  # None: the latest version of the Delta training set


def _decision_metadata(decision: registry.PromotionDecision) -> dict[str, object]:
    return {
        "decision": decision.decision,
        "decision_reason": decision.reason,
        "holdout_roc_auc": decision.challenger_roc_auc,
        "champion_version_before": decision.champion_version or "none",
        "champion_holdout_roc_auc": decision.champion_roc_auc,
        "auc_floor": decision.auc_floor,
        "promotion_tolerance": decision.promotion_tolerance,
        "holdout": dg.MetadataValue.json(decision.holdout),
    }


def _importance_table(importances: pd.DataFrame, top: int = 10) -> dg.MetadataValue:
    lines = ["| feature | ROC AUC drop when shuffled |", "|---|---|"]
    lines += [
        f"| {r.feature} | {r.importance_mean:.4f} ± {r.importance_std:.4f} |"
        for r in importances.head(top).itertuples()
    ]
    return dg.MetadataValue.md("\n".join(lines))


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            asset_keys.CHURN_MODEL,
            deps=[asset_keys.TRAINING_SET],
            description=(
                "The churn model trained on the latest training set, logged to MLflow and registered as the new "
                "version of the registered model with the alias `challenger`. Time-based split: the last "
                "`validation_days` of feature snapshots validate; training rows are those whose label window "
                "closes before validation starts (a gap of `churn_horizon_days`). Metadata: validation metrics, "
                "the promotion decision and a link to the MLflow run."
            ),
            kinds={"scikitlearn", "mlflow"},
            group_name=asset_keys.ML_GROUP,
            skippable=True,
        ),
        dg.AssetSpec(
            asset_keys.CHAMPION_MODEL,
            deps=[asset_keys.CHURN_MODEL],
            description=(
                "The model production scores with: the registry alias `champion`. The promotion gate scores the "
                "challenger and the champion on the challenger's holdout; the challenger takes over if its ROC AUC "
                "clears `thresholds.auc_floor` and trails the champion's by at most "
                "`thresholds.promotion_tolerance`. Materialized whenever the champion changes (promotion or "
                "the `rollback_champion` job)."
            ),
            kinds={"mlflow"},
            group_name=asset_keys.ML_GROUP,
            skippable=True,
        ),
    ],
    can_subset=True,
    pool=REGISTRY_POOL,
)
def churn_model(
    context: dg.AssetExecutionContext,
    config: ChurnModelConfig,
    mlflow: MlflowResource,
    lake: LakeResource,
    thresholds: ThresholdsResource,
    contract: ContractResource,
) -> Iterator[dg.MaterializeResult]:
    """Train and register a challenger, then run the promotion gate (each step only if its asset is selected)."""
    selected = context.selected_asset_keys
    model_metadata: dict[str, object] = {}

    if asset_keys.CHURN_MODEL in selected:
        path = lake_layout.offline_store(lake.root).training_set
        started = time.perf_counter()
        training_set = load_training_set(str(path), contract.contract, config.training_set_version)
        params = TrainingParams(**config.model_dump(exclude={"training_set_version"}))
        result = fit_on_split(training_set, params, contract.contract.horizon_days)
        training_seconds = time.perf_counter() - started  # read, split, fit, evaluate
        context.log.info(f"trained {params.model_kind.value} on {path} v{training_set.version}: {result.metrics}")
        importances = importance.permutation_importances(result)
        registered = tracking.log_and_register(result, mlflow, context.run.run_id, importances=importances)
        registry.write_protected_versions(mlflow, lake.root)
        split = result.split.describe()
        model_metadata = {
            **{k: float(v) for k, v in result.metrics.items()},
            "mlflow_run": dg.MetadataValue.url(registered.run_url),
            "model_version": registered.version,
            "model_version_url": dg.MetadataValue.url(registered.model_version_url),
            "model_uri": registered.model_uri,
            "model_kind": params.model_kind.value,
            "training_set": dg.MetadataValue.path(str(path)),
            "training_set_version": training_set.version,
            "feature_store_version": training_set.feature_store_version or "unknown",
            "train_rows": split["train_rows"],
            "validation_rows": split["validation_rows"],
            "validation_window": f"{split['validation_start']}..{split['validation_end']}",
            "train_window": f"{split['train_first_snapshot']}..{split['train_last_snapshot']}",
            "churn_horizon_days": split["churn_horizon_days"],
            "top_features": _importance_table(importances),
            "training_seconds": round(training_seconds, 2),
            "decision": "pending (ml/champion_model not selected)",
        }

    decision = None
    if asset_keys.CHAMPION_MODEL in selected:
        decision = registry.run_promotion_gate(
            mlflow,
            contract.contract,
            auc_floor=thresholds.auc_floor,
            tolerance=thresholds.promotion_tolerance,
            lake_root=lake.root,
            dagster_run_id=context.run.run_id,
        )
        log = context.log.info if decision.promoted else context.log.warning
        log(f"promotion gate: {decision.decision} v{decision.challenger_version}: {decision.reason}")
        model_metadata.update(_decision_metadata(decision))
        if asset_keys.CHURN_MODEL not in selected:
            # The gate ran on an earlier challenger: record its verdict on the model asset all the same.
            context.log_event(dg.AssetObservation(asset_key=asset_keys.CHURN_MODEL, metadata=model_metadata))

    if asset_keys.CHURN_MODEL in selected:
        # Data versions are registry versions: Dagster marks what was built from an older one as stale.
        yield dg.MaterializeResult(
            asset_key=asset_keys.CHURN_MODEL,
            metadata=model_metadata,
            data_version=dg.DataVersion(str(model_metadata["model_version"])),
        )
    if decision is not None and decision.promoted:
        yield dg.MaterializeResult(
            asset_key=asset_keys.CHAMPION_MODEL,
            data_version=dg.DataVersion(decision.challenger_version),
            metadata={
                "champion_version": decision.challenger_version,
                "previous_champion_version": decision.champion_version or "none",
                "holdout_roc_auc": decision.challenger_roc_auc,
                "reason": decision.reason,
                "change": "promotion",
                "champion_uri": f"models:/{mlflow.model_name}@{tracking.CHAMPION}",
                "model_version_url": dg.MetadataValue.url(mlflow.model_version_url(decision.challenger_version)),
            },
        )


@dg.asset_check(asset=asset_keys.CHAMPION_MODEL, name=CHAMPION_CHECK, blocking=True)
def champion_serves(mlflow: MlflowResource) -> dg.AssetCheckResult:
    """The champion loads through `models:/<name>@champion` as a pyfunc model (the way any consumer loads it) and
    returns one churn probability in [0, 1] per row of its logged input example. Blocking: nothing downstream
    scores with a champion that does not load, nor with one whose artifact asks to trust types the platform has
    not reviewed."""
    import mlflow as mlflow_lib
    import numpy as np

    from dagster_project.defs.ml.serialization import UntrustedArtifactError

    champion = registry.version_by_alias(mlflow, tracking.CHAMPION)
    uri = f"models:/{mlflow.model_name}@{tracking.CHAMPION}"
    if champion is None:
        return dg.AssetCheckResult(passed=False, metadata={"uri": uri, "error": "no version holds the alias"})
    try:
        with registry.verified_model(mlflow, str(champion.version)) as local:
            # pyfunc trusts the MLmodel's list, which was just checked to be within the platform's: loading this very
            # folder (not the URI again) leaves no room for the artifact to change in between.
            model = mlflow_lib.pyfunc.load_model(str(local))
    except UntrustedArtifactError as error:
        return dg.AssetCheckResult(
            passed=False, metadata={"uri": uri, "version": str(champion.version), "error": str(error)}
        )
    example = model.input_example
    if example is None:
        return dg.AssetCheckResult(passed=False, metadata={"uri": uri, "error": "the model has no input example"})
    probabilities = np.asarray(model.predict(example))
    passed = bool(
        probabilities.ndim == 2
        and probabilities.shape == (len(example), 2)
        and np.all((probabilities >= 0) & (probabilities <= 1))
        and np.allclose(probabilities.sum(axis=1), 1.0)
    )
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "uri": uri,
            "version": str(champion.version),
            "rows": len(example),
            "churn_probabilities": dg.MetadataValue.json([round(float(p), 6) for p in probabilities[:, 1]]),
        },
    )


class RollbackConfig(dg.Config):
    """Which registered version becomes champion again, and why."""

    version: int
    reason: str = "manual rollback from Dagster"
    force: bool = False  # allow a version that never passed the promotion gate


@dg.op(pool=REGISTRY_POOL)
def set_champion_alias(
    context: dg.OpExecutionContext, config: RollbackConfig, mlflow: MlflowResource, lake: LakeResource
) -> Iterator[dg.AssetMaterialization | dg.Output]:
    """Point the registry alias `champion` at `config.version`; the next scoring run uses it."""
    result = registry.rollback_champion(mlflow, config.version, config.reason, config.force, lake_root=lake.root)
    context.log.warning(f"champion rolled back: v{result.previous_version} -> v{result.version} ({result.reason})")
    yield rollback_materialization(result, mlflow)
    yield dg.Output(result.as_dict())


@dg.job(
    description=(
        "Roll the champion back to a named earlier version: launch with run config "
        "`ops: {set_champion_alias: {config: {version: N, reason: '...'}}}`. Same as "
        "`python -m dagster_project.defs.ml.rollback --version N`. Scoring uses that version from its next run."
    ),
    tags={"kind": "rollback"},
)
def rollback_champion():
    set_champion_alias()


def rollback_materialization(
    result: registry.RollbackResult, mlflow: MlflowResource, origin: str = ""
) -> dg.AssetMaterialization:
    """The event that records a rollback on `ml/champion_model` (from the job, or the command line's ``origin``)."""
    return dg.AssetMaterialization(
        asset_key=asset_keys.CHAMPION_MODEL,
        description=f"rollback to version {result.version}{f' ({origin})' if origin else ''}",
        tags={"dagster/data_version": result.version},
        metadata={
            "champion_version": result.version,
            "previous_champion_version": result.previous_version or "none",
            "reason": result.reason,
            "change": "rollback",
            "champion_uri": f"models:/{mlflow.model_name}@{tracking.CHAMPION}",
            "model_version_url": dg.MetadataValue.url(mlflow.model_version_url(result.version)),
        },
    )
