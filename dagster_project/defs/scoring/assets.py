"""``scoring/batch_scores``: every night, the champion scores the day's feature snapshot."""

import datetime as dt
import time
from collections.abc import Iterator

import dagster as dg
import numpy as np
from pydantic import Field

from dagster_project import asset_keys
from dagster_project.defs.scoring import champion as champions
from dagster_project.defs.scoring import scores as scoring
from dagster_project.problem import Problem
from dagster_project.resources import ContractResource, LakeResource, MlflowResource

SCORES_SANE_CHECK = "scores_are_sane"


class BatchScoresConfig(dg.Config):
    """Risk bands (the contract's unless set) and the size of the business's top-risk list."""

    medium_risk_from: float | None = Field(
        None, gt=0, lt=1, description="probability from which an entity is medium risk (default: the contract's)"
    )
    high_risk_from: float | None = Field(
        None, gt=0, le=1, description="probability from which an entity is high risk (default: the contract's)"
    )
    top_risk_size: int = Field(500, ge=1, description="entities in the day's top-risk export")

    def bands(self, contract: ContractResource) -> scoring.RiskBands:
        declared = contract.contract.risk_bands
        return scoring.RiskBands(  # raises on a bad order
            self.medium_risk_from if self.medium_risk_from is not None else declared[0],
            self.high_risk_from if self.high_risk_from is not None else declared[1],
        )


def _sanity_result(sanity: scoring.ScoreSanity, partition: str, written: bool) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset_keys.BATCH_SCORES,
        check_name=SCORES_SANE_CHECK,
        passed=sanity.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={**sanity.as_metadata(), "partition": partition, "written": written},
    )


def build_batch_scores(partitions: dg.PartitionsDefinition, problem: Problem) -> dg.AssetsDefinition:
    """``scoring/batch_scores`` over ``partitions`` (the daily partitions of the definitions being loaded)."""
    declared = problem.contract
    entity_columns = [dg.TableColumn(c, description="the entity key (the contract's)") for c in declared.entity]

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
                description="The stored scores of the day are sane: exactly one per entity of the day's snapshot, no "
                "nulls, every probability in [0, 1]. Blocking: monitoring does not run on broken scores.",
            )
        ],
        output_required=False,  # scores that fail their check are not written, and the asset not materialized
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    *entity_columns,
                    dg.TableColumn(declared.as_of, "date", description="the feature snapshot scored (partition)"),
                    dg.TableColumn(
                        scoring.PROBABILITY, "double", description=f"P({declared.label} within the label horizon)"
                    ),
                    dg.TableColumn("risk_band", "string", description="low | medium | high (fixed cut points)"),
                    dg.TableColumn("model_name", "string"),
                    dg.TableColumn("model_version", "string", description="the registered version that scored"),
                    dg.TableColumn("scored_at", "timestamp", description="UTC"),
                ]
            ),
        },
    )
    def batch_scores(
        context: dg.AssetExecutionContext,
        config: BatchScoresConfig,
        lake: LakeResource,
        mlflow: MlflowResource,
        contract: ContractResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """Probabilities for every entity in the day's feature snapshot, from the registry's `champion`.

        Reads the day from the Delta offline store, loads `models:/<name>@champion` (resolved to a version once, and
        that version recorded with every row), scores, and replaces the day in the Delta table
        `lake/scoring/batch_scores` (partitioned by the contract's day column): re-scoring a day replaces its rows.
        Scores that fail the sanity check are not written (nor is the asset materialized): the check fails, and
        what is downstream does not run. The day's top-risk entities are exported as CSV to
        `lake/scoring/top_risk/date=<day>/top_risk.csv`. Fails with the way out if no champion exists yet.
        """
        date = dt.date.fromisoformat(context.partition_key)
        names = contract.contract
        timings: dict[str, float] = {}

        started = time.perf_counter()
        champion = champions.load_champion(mlflow)
        challenger = champions.load_challenger(mlflow, champion)
        timings["load_model_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        # The challenger's features are read when the snapshot has them: a shadow never stops the champion's scores.
        shadow_columns = tuple(challenger.feature_columns()) if challenger else ()
        features = scoring.read_feature_snapshot(
            lake.root,
            date,
            names,
            columns=champion.feature_columns(),
            optional=(*names.top_risk_columns, *shadow_columns),
        )
        absent = [c for c in shadow_columns if c not in features.columns]
        if challenger is not None and absent:
            context.log.warning(
                f"challenger v{challenger.version} is not shadowed: the snapshot of {date} lacks its features {absent}"
            )
            challenger = None
        timings["read_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        scores = scoring.score_snapshot(
            champion.model,
            features,
            names,
            model_name=champion.name,
            model_version=champion.version,
            bands=config.bands(contract),
            shadow=(challenger.model, challenger.version) if challenger else None,
        )
        timings["predict_seconds"] = time.perf_counter() - started

        # Checked before anything is written, so scores that fail never reach the table or the top-risk list.
        sanity = scoring.check_scores(scores, features, names)
        if not sanity.passed:
            context.log.error(f"the scores of {date} are not sane, nothing written: {sanity.as_metadata()}")
            yield _sanity_result(sanity, context.partition_key, written=False)
            return

        started = time.perf_counter()
        written = scoring.write_scores(
            lake.root,
            date,
            scores,
            names,
            commit_metadata={"model_version": champion.version, "dagster_run_id": context.run.run_id},
        )
        timings["write_seconds"] = time.perf_counter() - started
        if written.replaced_rows:
            context.log.info(f"re-scored {date}: replaced {written.replaced_rows} earlier scores of the day")

        # Read back what was stored: this also catches a write that appended instead of replacing. If it fails,
        # the day's earlier scores are put back before anything else can read the table's new version.
        started = time.perf_counter()
        stored = scoring.check_scores(scoring.read_scores_table(lake.root, date, names), features, names)
        timings["check_seconds"] = time.perf_counter() - started
        if not stored.passed:
            restored = scoring.restore_day(lake.root, date, written, names)
            context.log.error(f"the stored scores of {date} are not sane; the day was restored (version {restored})")
            yield _sanity_result(stored, context.partition_key, written=False)
            return

        top = scoring.top_risk(scores, features, config.top_risk_size, names)
        top_path = scoring.write_top_risk(lake.root, date, top)
        probability = scores[scoring.PROBABILITY].to_numpy()
        band_counts = scores["risk_band"].value_counts()
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(scores),
                "model_name": champion.name,
                "model_version": champion.version,
                "model_version_url": dg.MetadataValue.url(mlflow.model_version_url(champion.version)),
                "champion_validation_roc_auc": champion.validation_roc_auc,
                # Batch shadow: the challenger scored the same rows (null when there is no challenger to shadow).
                "shadow_challenger_version": challenger.version if challenger else None,
                "shadow_mean_churn_probability": (
                    float(scores[scoring.CHALLENGER_PROBABILITY].mean()) if challenger else None
                ),
                "mean_churn_probability": float(probability.mean()),
                "p90_churn_probability": float(np.quantile(probability, 0.9)),
                "high_risk_entities": int(band_counts.get("high", 0)),
                "medium_risk_entities": int(band_counts.get("medium", 0)),
                "low_risk_entities": int(band_counts.get("low", 0)),
                "high_risk_share": float(band_counts.get("high", 0) / len(scores)),
                "replaced_rows": written.replaced_rows,
                "delta_table_version": written.table_version,
                "path": dg.MetadataValue.path(str(written.path)),
                "top_risk_path": dg.MetadataValue.path(str(top_path)),
                **{name: round(seconds, 3) for name, seconds in timings.items()},
            },
            check_results=[_sanity_result(stored, context.partition_key, written=True)],
        )

    return batch_scores
