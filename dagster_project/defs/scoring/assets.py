"""``scoring/batch_scores``: every night, the champion scores the day's feature snapshot."""

import datetime as dt
import time

import dagster as dg
import numpy as np
from pydantic import Field, model_validator

from dagster_project import asset_keys
from dagster_project.defs.scoring import champion as champions
from dagster_project.defs.scoring import scores as scoring
from dagster_project.resources import LakeResource, MlflowResource

SCORES_SANE_CHECK = "scores_are_sane"


class BatchScoresConfig(dg.Config):
    """Risk bands and the size of the business's top-risk list."""

    medium_risk_from: float = Field(0.1, gt=0, lt=1, description="churn probability from which a customer is medium")
    high_risk_from: float = Field(0.3, gt=0, le=1, description="churn probability from which a customer is high risk")
    top_risk_size: int = Field(500, ge=1, description="customers in the day's top-risk export")

    @model_validator(mode="after")
    def _ordered(self) -> "BatchScoresConfig":
        scoring.RiskBands(self.medium_risk_from, self.high_risk_from)  # raises on a bad order
        return self


def build_batch_scores(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``scoring/batch_scores`` over ``partitions`` (the daily partitions of the definitions being loaded)."""

    @dg.asset(
        key=asset_keys.BATCH_SCORES,
        partitions_def=partitions,
        deps=[asset_keys.FEATURE_SNAPSHOTS, asset_keys.CHAMPION_MODEL],
        group_name=asset_keys.SCORING_GROUP,
        kinds={"scikitlearn", "mlflow", "deltalake"},
        check_specs=[
            dg.AssetCheckSpec(
                SCORES_SANE_CHECK,
                asset=asset_keys.BATCH_SCORES,
                blocking=True,  # drift and performance never read broken scores
                description="The stored scores of the day are sane: exactly one per customer of the day's snapshot, no "
                "nulls, every churn probability in [0, 1]. Blocking: monitoring does not run on broken scores.",
            )
        ],
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn("customer_id", "string"),
                    dg.TableColumn("snapshot_date", "date", description="the feature snapshot scored (partition)"),
                    dg.TableColumn("churn_probability", "double", description="P(cancels within the churn horizon)"),
                    dg.TableColumn("risk_band", "string", description="low | medium | high (fixed cut points)"),
                    dg.TableColumn("model_name", "string"),
                    dg.TableColumn("model_version", "string", description="the registered version that scored"),
                    dg.TableColumn("scored_at", "timestamp", description="UTC"),
                ]
            ),
        },
    )
    def batch_scores(
        context: dg.AssetExecutionContext, config: BatchScoresConfig, lake: LakeResource, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        """Churn probabilities for every customer in the day's feature snapshot, from the registry's `champion`.

        Reads the day from the Delta offline store, loads `models:/<name>@champion` (resolved to a version once, and
        that version recorded with every row), scores, and replaces the day in the Delta table
        `lake/scoring/batch_scores` (partitioned by `snapshot_date`): re-scoring a day replaces its rows. The day's
        top-risk customers are exported as CSV to `lake/scoring/top_risk/date=<day>/top_risk.csv`. Fails with the way
        out if no champion exists yet.
        """
        date = dt.date.fromisoformat(context.partition_key)
        timings: dict[str, float] = {}

        started = time.perf_counter()
        champion = champions.load_champion(mlflow)
        timings["load_model_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        features = scoring.read_feature_snapshot(
            lake.root, date, columns=champion.feature_columns(), optional=scoring.TOP_RISK_CONTEXT
        )
        timings["read_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        bands = scoring.RiskBands(config.medium_risk_from, config.high_risk_from)
        scores = scoring.score_snapshot(
            champion.model, features, model_name=champion.name, model_version=champion.version, bands=bands
        )
        timings["predict_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        written = scoring.write_scores(
            lake.root,
            date,
            scores,
            commit_metadata={"model_version": champion.version, "dagster_run_id": context.run.run_id},
        )
        top = scoring.top_risk(scores, features, config.top_risk_size)
        top_path = scoring.write_top_risk(lake.root, date, top)
        timings["write_seconds"] = time.perf_counter() - started
        if written.replaced_rows:
            context.log.info(f"re-scored {date}: replaced {written.replaced_rows} earlier scores of the day")

        # The check reads back what was stored, so it also catches a write that appended instead of replacing.
        started = time.perf_counter()
        sanity = scoring.check_scores(scoring.read_scores_table(lake.root, date), features["customer_id"])
        timings["check_seconds"] = time.perf_counter() - started
        probability = scores["churn_probability"].to_numpy()
        band_counts = scores["risk_band"].value_counts()
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(scores),
                "model_name": champion.name,
                "model_version": champion.version,
                "model_version_url": dg.MetadataValue.url(mlflow.model_version_url(champion.version)),
                "champion_validation_roc_auc": champion.validation_roc_auc,
                "mean_churn_probability": float(probability.mean()),
                "p90_churn_probability": float(np.quantile(probability, 0.9)),
                "high_risk_customers": int(band_counts.get("high", 0)),
                "medium_risk_customers": int(band_counts.get("medium", 0)),
                "low_risk_customers": int(band_counts.get("low", 0)),
                "high_risk_share": float(band_counts.get("high", 0) / len(scores)),
                "replaced_rows": written.replaced_rows,
                "delta_table_version": written.table_version,
                "path": dg.MetadataValue.path(str(written.path)),
                "top_risk_path": dg.MetadataValue.path(str(top_path)),
                **{name: round(seconds, 3) for name, seconds in timings.items()},
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=SCORES_SANE_CHECK,
                    passed=sanity.passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={**sanity.as_metadata(), "partition": context.partition_key},
                )
            ],
        )

    return batch_scores
