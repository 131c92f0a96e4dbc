"""Monitoring assets: the nightly drift report and the realized performance of matured scores, with their checks.

Both checks have severity ERROR and are what the ``retrain_on_drift`` sensor (``automation/sensors.py``) watches.
"""

import datetime as dt
import math
import time
from collections.abc import Iterator

import dagster as dg
import pandas as pd
from pydantic import Field

from dagster_project import asset_keys, faults
from dagster_project import lake as lake_layout
from dagster_project.defs.ml import registry
from dagster_project.defs.ml.training import PREDICTION
from dagster_project.defs.monitoring import drift as drifts
from dagster_project.defs.monitoring import performance as perf
from dagster_project.defs.scoring import champion as champions
from dagster_project.defs.scoring import scores as scoring
from dagster_project.partitions import horizon_days
from dagster_project.problem import Problem
from dagster_project.resources import ContractResource, LakeResource, MlflowResource, ThresholdsResource

DRIFT_CHECK = "drift_share_below_threshold"
PERFORMANCE_CHECK = "realized_auc_within_tolerance"


class DriftReportConfig(dg.Config):
    """How much of the day the drift report compares."""

    max_current_rows: int = Field(
        20_000, ge=0, description="sample the day down to this many rows (seeded); 0 compares every row"
    )
    seed: int = Field(0, description="seed of the sample")
    column_threshold: float = Field(drifts.COLUMN_THRESHOLD, gt=0, description="a column drifts at this distance")
    key_feature_threshold: float = Field(
        drifts.KEY_FEATURE_THRESHOLD, gt=0, description="a key feature of the model fails the check at this distance"
    )


def _model_of(scores: pd.DataFrame) -> tuple[str, str]:
    versions = scores["model_version"].astype(str).unique()
    if len(versions) != 1:
        raise ValueError(f"the day's scores come from several model versions {sorted(versions)}: re-score the day")
    return str(scores["model_name"].iloc[0]), str(versions[0])


def reference_sample(mlflow: MlflowResource, version: str) -> pd.DataFrame:
    """The drift reference logged with the training run of registered ``version``."""
    from dagster_project.defs.ml.tracking import REFERENCE_ARTIFACT

    local = registry.version_artifact(mlflow, version, REFERENCE_ARTIFACT)
    if local is None:
        raise FileNotFoundError(f"version {version} of {mlflow.model_name} logged no {REFERENCE_ARTIFACT}")
    reference = pd.read_parquet(local)
    if PREDICTION not in reference.columns:
        raise KeyError(f"the reference sample of version {version} has no {PREDICTION!r} column")
    return reference


def _drift_table(result: drifts.DriftResult, top: int = 15) -> dg.MetadataValue:
    lines = ["| feature | drift score | method | drifted |", "|---|---|---|---|"]
    ranked = sorted(result.features.values(), key=lambda c: -c.score)
    lines += [f"| {c.column} | {c.score:.4f} | {c.method} | {'yes' if c.drifted else ''} |" for c in ranked[:top]]
    if len(ranked) > top:
        lines.append(f"| … {len(ranked) - top} more (see the report) | | | |")
    return dg.MetadataValue.md("\n".join(lines))


def build_drift_report(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``monitoring/drift_report`` over ``partitions``."""

    @dg.asset(
        key=asset_keys.DRIFT_REPORT,
        partitions_def=partitions,
        deps=[asset_keys.BATCH_SCORES, asset_keys.FEATURE_SNAPSHOTS],
        group_name=asset_keys.MONITORING_GROUP,
        kinds={"evidently", "html"},
        check_specs=[
            dg.AssetCheckSpec(
                DRIFT_CHECK,
                asset=asset_keys.DRIFT_REPORT,
                description="Fewer than `thresholds.drift_share` of the model's features drifted from the champion's "
                "reference (PLATFORM_THRESHOLDS__DRIFT_SHARE), and none of its `thresholds.drift_key_features` most "
                "important features did (PLATFORM_THRESHOLDS__DRIFT_KEY_FEATURES). Severity ERROR: a failure makes the "
                "`retrain_on_drift` sensor request a retraining. The values in force are in each result's metadata.",
            )
        ],
    )
    def drift_report(
        context: dg.AssetExecutionContext,
        config: DriftReportConfig,
        lake: LakeResource,
        mlflow: MlflowResource,
        thresholds: ThresholdsResource,
        contract: ContractResource,
    ) -> dg.MaterializeResult:
        """An Evidently data-drift report of the day: its features and probabilities against the reference
        sample of the model that scored them (its validation rows with its predictions, logged to MLflow).

        The HTML report is saved to `lake/monitoring/drift_reports/date=<day>/report.html` and linked here. The key
        figures (share of drifted features, the drifted features, each feature's drift score, prediction drift) are
        metadata, so the asset's Plots tab shows them over days. The day may be sampled for speed: the report says so.
        """
        date = dt.date.fromisoformat(context.partition_key)
        threshold = thresholds.drift_share
        started = time.perf_counter()
        names = contract.contract
        scores = scoring.read_scores(lake.root, date, names)
        if scores.empty:
            raise LookupError(f"no batch scores for {date}: materialize scoring/batch_scores for {date} first")
        model_name, version = _model_of(scores)
        reference = reference_sample(mlflow, version)
        key_features = registry.key_features(mlflow, version, thresholds.drift_key_features)
        features = registry.model_features(mlflow, version)
        snapshot = scoring.read_feature_snapshot(lake.root, date, names, columns=features.all)
        entity = list(names.entity)
        current = snapshot.merge(
            scores[[*entity, scoring.PROBABILITY]], on=entity, how="inner", validate="one_to_one"
        ).rename(columns={scoring.PROBABILITY: PREDICTION})
        load_seconds = time.perf_counter() - started

        started = time.perf_counter()
        result = drifts.compute_drift(
            reference,
            current,
            features,
            drift_share=threshold,
            max_current_rows=config.max_current_rows or None,
            seed=config.seed,
            column_threshold=config.column_threshold,
            key_features=key_features,
            key_feature_threshold=config.key_feature_threshold,
        )
        compute_seconds = time.perf_counter() - started
        path = lake_layout.drift_report_path(lake.root, date)
        notes = drifts.report_notes(result, f"a seeded sample of the validation rows of {model_name} v{version}")
        drifts.save_report(result, path, f"Data drift on {date}: {model_name} v{version}", notes)
        faults.write_point(faults.DRIFT_REPORT)

        failed = result.failed
        verdict = (
            (f"key features drifted: {', '.join(result.drifted_key_features)}; " if result.drifted_key_features else "")
            + f"{len(result.drifted_features)} of {len(features.all)} features drifted "
            f"({result.share_of_drifted_features:.0%}; fails at {threshold:.0%})"
        )
        if failed:
            context.log.warning(f"drift on {date}: {verdict}: {result.drifted_features}")
        drifted = ", ".join(result.drifted_features) or "none"
        drifted_key = ", ".join(result.drifted_key_features) or "none"
        return dg.MaterializeResult(
            metadata={
                "share_of_drifted_features": round(result.share_of_drifted_features, 6),
                "drifted_features_count": len(result.drifted_features),
                "drifted_features": drifted,
                "key_features": ", ".join(key_features) or "none",
                "drifted_key_features": drifted_key,
                "prediction_drift_score": round(result.prediction.score, 6),
                "prediction_drifted": result.prediction.drifted,
                "drift_scores": _drift_table(result),
                **{f"drift_score/{name}": round(score, 6) for name, score in result.drift_scores.items()},
                "report": dg.MetadataValue.url(lake_layout.link(path)),
                "report_path": dg.MetadataValue.path(str(path)),
                "model_version": version,
                "current_rows": result.current_rows,
                "current_rows_compared": result.current_rows_compared,
                "reference_rows": result.reference_rows,
                "sampled": result.sampled,
                "load_seconds": round(load_seconds, 3),
                "compute_seconds": round(compute_seconds, 3),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=DRIFT_CHECK,
                    passed=not failed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=verdict,
                    metadata={
                        "partition": context.partition_key,
                        "share_of_drifted_features": round(result.share_of_drifted_features, 6),
                        "threshold": threshold,
                        "drifted_features": drifted,
                        "drifted_key_features": drifted_key,
                        "prediction_drift_score": round(result.prediction.score, 6),
                        "model_version": version,
                    },
                )
            ],
        )

    return drift_report


def build_model_performance(
    partitions: dg.PartitionsDefinition, scores_judged: dg.TimeWindowPartitionMapping, problem: Problem
) -> dg.AssetsDefinition:
    """``monitoring/model_performance`` over ``partitions``: partition P judges the scores of the day that
    ``scores_judged`` maps it to (P - N, N the label horizon)."""

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                asset_keys.MODEL_PERFORMANCE,
                partitions_def=partitions,
                deps=[
                    # Partition P judges the scores of P - N ...
                    dg.AssetDep(
                        asset_keys.BATCH_SCORES,
                        partition_mapping=scores_judged,
                    ),
                    # ... against the labels that matured with partition P (the label export files them under P).
                    asset_keys.lake_export(problem.contract.labels_model),
                ],
                group_name=asset_keys.MONITORING_GROUP,
                kinds={"scikitlearn", "parquet"},
                description=(
                    "The realized performance of the scores of the label horizon's days earlier, once their labels "
                    "have matured: ROC AUC (with its standard error), PR AUC, Brier score and base rate, "
                    "against the validation ROC AUC of the model version that made the scores. One row per day in "
                    "`lake/monitoring/model_performance/date=<day>/part-0.parquet`. Days whose scores or labels do not "
                    "exist (yet) are materialized with `evaluated: false` and the reason."
                ),
            )
        ],
        check_specs=[
            dg.AssetCheckSpec(
                PERFORMANCE_CHECK,
                asset=asset_keys.MODEL_PERFORMANCE,
                description=(
                    "Fails when the realized ROC AUC is below the model's validation ROC AUC by more than "
                    "`thresholds.performance_tolerance` (PLATFORM_THRESHOLDS__PERFORMANCE_TOLERANCE) AND the "
                    "shortfall is significant: its one-sided p-value, from the Hanley-McNeil standard errors of the "
                    "realized AUC and of the validation AUC (when the version recorded its counts), is below "
                    "`thresholds.performance_significance_level` "
                    "(PLATFORM_THRESHOLDS__PERFORMANCE_SIGNIFICANCE_LEVEL). "
                    "So a day's noise on a few dozen positives does not retrain. Evaluated only once the labels have "
                    "matured (skipped before, and on days with too few positives or negatives to judge). Severity "
                    "ERROR: a failure makes the `retrain_on_drift` sensor request a retraining. The metadata gives "
                    "the AUCs, their standard errors, z, p-value and the rule in force."
                ),
            )
        ],
        # The check is optional: it is skipped, not faked, on days with nothing to judge yet.
        can_subset=True,
    )
    def model_performance(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        mlflow: MlflowResource,
        thresholds: ThresholdsResource,
        contract: ContractResource,
    ) -> Iterator[dg.MaterializeResult]:
        """Judge the scores of day P - N (N = the label horizon) on the labels that matured on day P."""
        date = dt.date.fromisoformat(context.partition_key)
        names = contract.contract
        # The graph's own mapping, read back: a run cannot judge other days than the UI shows.
        scored_date = date - dt.timedelta(days=horizon_days(scores_judged))
        scores = scoring.read_scores(lake.root, scored_date, names)
        labels = perf.read_matured_labels(lake.root, scored_date, names, partitions=[date, scored_date])
        result = perf.realized_performance(scores, labels, names, evaluated_on=date, scored_date=scored_date)
        validation = None
        if result.evaluated and result.model_version is not None:
            validation = champions.validation_auc(mlflow, result.model_version)
            result = perf.RealizedPerformance(
                **{**result.__dict__, "validation_roc_auc": None if validation is None else validation.roc_auc}
            )
        path = lake_layout.write_partition_atomically(
            perf.performance_table(result), lake_layout.model_performance_path(lake.root, date)
        )
        faults.write_point(faults.PERFORMANCE)
        metadata: dict[str, object] = {
            "evaluated": result.evaluated,
            "reason": result.reason,
            "scored_date": scored_date.isoformat(),
            "labelled_rows": result.rows,
            "positives": result.positives,
            "label_coverage": round(result.label_coverage, 6),
            "path": dg.MetadataValue.path(str(path)),
        }
        for name in (
            "realized_roc_auc",
            "roc_auc_standard_error",
            "realized_pr_auc",
            "brier",
            "base_rate",
            "mean_churn_probability",
            "validation_roc_auc",
            "challenger_roc_auc",
            "challenger_roc_auc_standard_error",
            "roc_auc_difference",
            "roc_auc_difference_standard_error",
            "roc_auc_difference_p_value",
        ):
            value = getattr(result, name)
            if value is not None:
                metadata[name] = round(float(value), 6)
        if result.challenger_version is not None:
            metadata["challenger_version"] = result.challenger_version
        if result.model_version is not None:
            metadata["model_version"] = result.model_version
        yield dg.MaterializeResult(asset_key=asset_keys.MODEL_PERFORMANCE, metadata=metadata)

        if not result.evaluated:
            context.log.info(f"performance of {scored_date} not evaluated: {result.reason}")
            return
        if validation is None or result.realized_roc_auc is None:
            raise ValueError(
                f"model version {result.model_version} records no validation ROC AUC (tag metric.roc_auc): "
                "the performance check has nothing to compare with"
            )
        verdict = perf.judge_realized_auc(
            result.realized_roc_auc,
            result.positives,
            result.rows - result.positives,
            validation.roc_auc,
            tolerance=thresholds.performance_tolerance,
            significance_level=thresholds.performance_significance_level,
            validation_positives=validation.positives,
            validation_negatives=validation.negatives,
        )
        yield dg.AssetCheckResult(
            asset_key=asset_keys.MODEL_PERFORMANCE,
            check_name=PERFORMANCE_CHECK,
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"realized ROC AUC {verdict.realized_roc_auc:.4f} on the scores of {scored_date} vs validation "
                f"{verdict.validation_roc_auc:.4f}: {verdict.reason}"
            ),
            metadata={
                "partition": context.partition_key,
                "scored_date": scored_date.isoformat(),
                "realized_roc_auc": round(verdict.realized_roc_auc, 6),
                "roc_auc_standard_error": round(verdict.realized_standard_error, 6),
                "validation_roc_auc": round(verdict.validation_roc_auc, 6),
                # Absent for versions registered before their validation counts were recorded.
                **(
                    {
                        "validation_standard_error": round(verdict.validation_standard_error, 6),
                        "validation_positives": validation.positives,
                        "validation_negatives": validation.negatives,
                    }
                    if verdict.validation_standard_error is not None
                    else {}
                ),
                "floor": round(verdict.validation_roc_auc - verdict.tolerance, 6),
                "shortfall": round(verdict.shortfall, 6),
                "z": round(verdict.z, 4) if math.isfinite(verdict.z) else str(verdict.z),
                "p_value": float(f"{verdict.p_value:.6g}"),
                "tolerance": verdict.tolerance,
                "significance_level": verdict.significance_level,
                "rule": verdict.rule,
                "model_version": result.model_version or "unknown",
                "labelled_rows": result.rows,
                "positives": result.positives,
            },
        )

    return model_performance
