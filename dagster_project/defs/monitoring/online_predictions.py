"""``monitoring/online_predictions``: what the prediction service answered, judged as the batch path is judged.

The service logs every prediction under the feature day it was made on (``defs/serving/prediction_log.py``). The
features of day D are served from the night D is published until the next night replaces them, so the traffic of
feature day D is complete once day D + 1 is published. Partition P therefore runs after the online store publishes
P (it depends on ``serving/online_store`` P) and reports on two earlier days:

* **served**, the traffic of feature day P - 1, now complete: how many predictions, entities and variants, the
  latencies the service measured, and its drift against the champion's reference, with the same Evidently report
  and rule as the batch drift report (``drift.compute_drift``) on the features the champion was served;
* **matured**, the predictions of feature day P - N (N, the label horizon), whose labels matured with P: the
  champion and the challenger on the same rows (the challenger's shadow scores beside the champion's answers),
  both ROC AUCs with DeLong's standard errors and the difference's (``comparison.compare_models``), and each
  A/B variant's realized AUC on the entities it answered.

A day without traffic is materialized with the reason; its check is skipped, not faked.
"""

import datetime as dt
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.metrics import roc_auc_score

from dagster_project import asset_keys
from dagster_project import lake as lake_layout
from dagster_project.defs.ml import registry
from dagster_project.defs.ml.tracking import CHALLENGER, CHAMPION
from dagster_project.defs.ml.training import PREDICTION
from dagster_project.defs.monitoring import drift as drifts
from dagster_project.defs.monitoring import performance as perf
from dagster_project.defs.monitoring.assets import reference_sample
from dagster_project.defs.monitoring.comparison import compare_models
from dagster_project.defs.serving.prediction_log import read_prediction_log
from dagster_project.online_store import entity_key
from dagster_project.partitions import horizon_days
from dagster_project.problem import Problem
from dagster_project.resources import ContractResource, LakeResource, MlflowResource, ThresholdsResource
from spark_jobs.contract import Contract

ONLINE_DRIFT_CHECK = "online_drift_share_below_threshold"
# Fewer champion-answered entities than this and the day's traffic is too thin for a drift verdict.
MIN_DRIFT_ROWS = 50

SUMMARY_SCHEMA = pa.schema(
    [
        pa.field("evaluated_on", pa.date32()),
        pa.field("served_feature_day", pa.date32()),
        pa.field("predictions", pa.int64()),
        pa.field("entities", pa.int64()),
        pa.field("champion_predictions", pa.int64()),
        pa.field("challenger_predictions", pa.int64()),
        pa.field("shadowed_predictions", pa.int64()),
        pa.field("latency_p50_ms", pa.float64()),
        pa.field("latency_p99_ms", pa.float64()),
        pa.field("drift_evaluated", pa.bool_()),
        pa.field("share_of_drifted_features", pa.float64()),
        pa.field("matured_feature_day", pa.date32()),
        pa.field("compared_rows", pa.int64()),
        pa.field("compared_positives", pa.int64()),
        pa.field("champion_version", pa.string()),
        pa.field("challenger_version", pa.string()),
        pa.field("champion_roc_auc", pa.float64()),
        pa.field("champion_standard_error", pa.float64()),
        pa.field("challenger_roc_auc", pa.float64()),
        pa.field("challenger_standard_error", pa.float64()),
        pa.field("roc_auc_difference", pa.float64()),
        pa.field("roc_auc_difference_standard_error", pa.float64()),
        pa.field("roc_auc_difference_p_value", pa.float64()),
        pa.field("ab_champion_roc_auc", pa.float64()),
        pa.field("ab_challenger_roc_auc", pa.float64()),
    ]
)


@dataclass
class OnlineSummary:
    """One partition's figures (the row written to ``lake/monitoring/online_predictions``)."""

    evaluated_on: dt.date
    served_feature_day: dt.date
    predictions: int = 0
    entities: int = 0
    champion_predictions: int = 0
    challenger_predictions: int = 0
    shadowed_predictions: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    drift_evaluated: bool = False
    share_of_drifted_features: float | None = None
    matured_feature_day: dt.date | None = None
    compared_rows: int = 0
    compared_positives: int = 0
    champion_version: str | None = None
    challenger_version: str | None = None
    champion_roc_auc: float | None = None
    champion_standard_error: float | None = None
    challenger_roc_auc: float | None = None
    challenger_standard_error: float | None = None
    roc_auc_difference: float | None = None
    roc_auc_difference_standard_error: float | None = None
    roc_auc_difference_p_value: float | None = None
    ab_champion_roc_auc: float | None = None
    ab_challenger_roc_auc: float | None = None

    def table(self) -> pa.Table:
        record = asdict(self)
        return pa.Table.from_pydict({name: [record[name]] for name in SUMMARY_SCHEMA.names}, schema=SUMMARY_SCHEMA)

    def metadata(self) -> dict[str, object]:
        values: dict[str, object] = {}
        for name, value in asdict(self).items():
            if value is None:
                continue
            if isinstance(value, dt.date):
                value = value.isoformat()
            elif isinstance(value, float):
                value = round(value, 6) if math.isfinite(value) else str(value)
            values[name] = value
        return values


def last_prediction_per_entity(log: pd.DataFrame) -> pd.DataFrame:
    """One row per entity: its last logged prediction (the log is oldest first), the rest of the day's repeats of
    the same features aside."""
    return log.drop_duplicates("entity_key", keep="last").reset_index(drop=True)


def served_features(rows: pd.DataFrame) -> pd.DataFrame:
    """The features each row was scored on (the log's JSON, overrides applied), with its answer as ``prediction``."""
    features = pd.DataFrame([json.loads(text) for text in rows["features"]], index=rows.index)
    features[PREDICTION] = rows["probability"].to_numpy()
    return features


def labelled(rows: pd.DataFrame, labels: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """``rows`` of the log joined with their matured labels, by the online store's key of the entity."""
    if labels.empty:
        return rows.iloc[0:0].assign(**{contract.label: pd.Series(dtype="int64")})
    keys = [entity_key(values) for values in labels[list(contract.entity)].itertuples(index=False, name=None)]
    matured = pd.DataFrame({"entity_key": keys, contract.label: labels[contract.label].to_numpy()})
    return rows.merge(matured, on="entity_key", how="inner", validate="one_to_one")


def compare_on_matured(summary: OnlineSummary, log: pd.DataFrame, labels: pd.DataFrame, contract: Contract) -> None:
    """Fill the matured-label comparison of ``summary`` from the log of the matured day and its labels."""
    rows = labelled(last_prediction_per_entity(log), labels, contract)
    label = contract.label
    # The same rows: the champion answered and the challenger scored them in its shadow.
    shadowed = rows[(rows["variant"] == CHAMPION) & rows["shadow_probability"].notna()]
    if not shadowed.empty:
        summary.champion_version = str(shadowed["model_version"].iloc[-1])
        summary.challenger_version = str(shadowed["shadow_model_version"].iloc[-1])
        comparison = compare_models(
            shadowed[label].to_numpy(), shadowed["probability"].to_numpy(), shadowed["shadow_probability"].to_numpy()
        )
        summary.compared_rows = len(shadowed)
        summary.compared_positives = int(shadowed[label].sum())
        if comparison is not None:
            summary.champion_roc_auc = comparison.champion_roc_auc
            summary.champion_standard_error = comparison.champion_standard_error
            summary.challenger_roc_auc = comparison.challenger_roc_auc
            summary.challenger_standard_error = comparison.challenger_standard_error
            summary.roc_auc_difference = comparison.difference
            summary.roc_auc_difference_standard_error = comparison.difference_standard_error
            summary.roc_auc_difference_p_value = comparison.p_value
    # A/B: each variant on the entities it answered (different rows: compare with care).
    for variant, field in ((CHAMPION, "ab_champion_roc_auc"), (CHALLENGER, "ab_challenger_roc_auc")):
        answered = rows[rows["variant"] == variant]
        y = answered[label].to_numpy()
        if min(int(y.sum()), int(len(y) - y.sum())) >= perf.MIN_CLASS_ROWS:
            setattr(summary, field, float(roc_auc_score(y, answered["probability"].to_numpy())))


def _traffic(summary: OnlineSummary, log: pd.DataFrame) -> None:
    summary.predictions = len(log)
    summary.entities = int(log["entity_key"].nunique())
    summary.champion_predictions = int((log["variant"] == CHAMPION).sum())
    summary.challenger_predictions = int((log["variant"] == CHALLENGER).sum())
    summary.shadowed_predictions = int(log["shadow_probability"].notna().sum())
    if len(log):
        latency = log["latency_ms"].to_numpy()
        summary.latency_p50_ms = float(np.percentile(latency, 50))
        summary.latency_p99_ms = float(np.percentile(latency, 99))


def build_online_predictions(
    partitions: dg.PartitionsDefinition, matured: dg.TimeWindowPartitionMapping, problem: Problem
) -> dg.AssetsDefinition:
    """``monitoring/online_predictions`` over ``partitions``; ``matured`` maps P to P - N (the label horizon)."""

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                asset_keys.ONLINE_PREDICTIONS,
                partitions_def=partitions,
                deps=[
                    # After P is published, the traffic of P - 1 is complete ...
                    asset_keys.ONLINE_STORE,
                    # ... and the labels of P - N matured with P.
                    asset_keys.lake_export(problem.contract.labels_model),
                ],
                group_name=asset_keys.MONITORING_GROUP,
                kinds={"evidently", "scikitlearn", "parquet"},
                description=(
                    "The prediction service's log, judged like the batch path. Partition P reports on the traffic "
                    "of feature day P - 1 (complete once P is published): predictions, entities, variants, "
                    "latencies and an Evidently drift report against the champion's reference; and on the "
                    "predictions of P - N, whose labels matured with P: the champion and its shadowing challenger "
                    "on the same rows (both ROC AUCs, DeLong standard errors, the difference's p-value) and each "
                    "A/B variant's AUC. One row per day in `lake/monitoring/online_predictions`."
                ),
            )
        ],
        check_specs=[
            dg.AssetCheckSpec(
                ONLINE_DRIFT_CHECK,
                asset=asset_keys.ONLINE_PREDICTIONS,
                description="The features the champion was served online drift from its reference by the batch "
                "drift check's rule (`thresholds.drift_share`). Severity WARN: the batch drift check is the one "
                "that requests a retraining. Skipped on days with too little traffic to judge.",
            )
        ],
        can_subset=True,
    )
    def online_predictions(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        mlflow: MlflowResource,
        thresholds: ThresholdsResource,
        contract: ContractResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        date = dt.date.fromisoformat(context.partition_key)
        names = contract.contract
        served_day = date - dt.timedelta(days=1)
        summary = OnlineSummary(evaluated_on=date, served_feature_day=served_day)

        log = read_prediction_log(lake.root, served_day)
        _traffic(summary, log)
        drift_result = None
        report_path = None
        champion_rows = last_prediction_per_entity(log[log["variant"] == CHAMPION])
        if len(champion_rows) >= MIN_DRIFT_ROWS:
            version = str(champion_rows["model_version"].mode().iloc[0])
            champion_rows = champion_rows[champion_rows["model_version"] == version]
            features = registry.model_features(mlflow, version)
            drift_result = drifts.compute_drift(
                reference_sample(mlflow, version),
                served_features(champion_rows),
                features,
                drift_share=thresholds.drift_share,
                key_features=registry.key_features(mlflow, version, thresholds.drift_key_features),
            )
            summary.drift_evaluated = True
            summary.share_of_drifted_features = drift_result.share_of_drifted_features
            report_path = lake_layout.online_drift_report_path(lake.root, served_day)
            notes = drifts.report_notes(drift_result, f"the validation rows of {mlflow.model_name} v{version}")
            notes.insert(
                0, f"The features the online champion was served on feature day {served_day}, one row per entity."
            )
            drifts.save_report(drift_result, report_path, f"Online data drift on {served_day}: v{version}", notes)

        matured_day = date - dt.timedelta(days=horizon_days(matured))
        summary.matured_feature_day = matured_day
        matured_log = read_prediction_log(lake.root, matured_day)
        if not matured_log.empty:
            labels = perf.read_matured_labels(lake.root, matured_day, names, partitions=[date, matured_day])
            compare_on_matured(summary, matured_log, labels, names)

        path = lake_layout.write_partition_atomically(
            summary.table(), lake_layout.online_predictions_path(lake.root, date)
        )
        metadata: dict[str, object] = {**summary.metadata(), "path": dg.MetadataValue.path(str(path))}
        if report_path is not None:
            metadata["report"] = dg.MetadataValue.url(lake_layout.link(report_path))
        if drift_result is not None:
            metadata["drifted_features"] = ", ".join(drift_result.drifted_features) or "none"
        if not summary.predictions:
            context.log.info(f"no predictions were logged on the features of {served_day}")
        yield dg.MaterializeResult(asset_key=asset_keys.ONLINE_PREDICTIONS, metadata=metadata)

        if drift_result is None:
            return
        yield dg.AssetCheckResult(
            asset_key=asset_keys.ONLINE_PREDICTIONS,
            check_name=ONLINE_DRIFT_CHECK,
            passed=not drift_result.failed,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"{len(drift_result.drifted_features)} of {len(drift_result.features)} served features drifted "
                f"({drift_result.share_of_drifted_features:.0%}; fails at {thresholds.drift_share:.0%})"
            ),
            metadata={
                "served_feature_day": served_day.isoformat(),
                "share_of_drifted_features": round(drift_result.share_of_drifted_features, 6),
                "drifted_features": ", ".join(drift_result.drifted_features) or "none",
                "drifted_key_features": ", ".join(drift_result.drifted_key_features) or "none",
                "entities": len(champion_rows),
            },
        )

    return online_predictions
