"""The dbt feature project as Dagster assets: every dbt model an asset, every dbt data test an asset check.

One daily partition is one dbt build of that snapshot day (dbt vars), incremental: each partitioned table
replaces the rows of the day, so re-running a partition never duplicates anything. Days are built in order (the
daily activity model depends on its previous day), in backfills too, where up to ``MAX_DAYS_PER_RUN`` days are
one dbt build (one parse, windows computed together) instead of one run per day.
"""

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import dbt_assets

from dagster_project import faults
from dagster_project.defs.features.translator import FeatureTranslator
from dagster_project.partitions import BACKFILL_POLICY
from dagster_project.problem import Problem
from dagster_project.resources import DbtResource, WarehouseResource
from spark_jobs.contract import Contract

# DuckDB allows one writing process per file: every step that writes or reads the warehouse takes this pool. Give
# it a limit of 1 in the instance (`dagster instance concurrency set duckdb_warehouse 1`, or dagster.yaml
# `concurrency: pools: default_limit: 1`); without one, dbt and the readers wait for the file lock and retry.
WAREHOUSE_POOL = "duckdb_warehouse"


def partitioned_models(manifest: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The models that hold rows per day (config meta ``run_days_column``): name -> relation, day column, and the
    boolean columns the model asks to have counted per day (meta ``day_counts``)."""
    models = {}
    for node in manifest["nodes"].values():
        meta = node.get("config", {}).get("meta") or {}
        column = meta.get("run_days_column")
        if node["resource_type"] == "model" and column and node["config"].get("materialized") != "view":
            models[node["name"]] = {
                "relation": f'"{node["schema"]}"."{node["alias"]}"',
                "day_column": column,
                "unique_id": node["unique_id"],
                "checksum": node["checksum"]["checksum"],
                "columns": list(node.get("columns") or {}),
                "day_counts": list(meta.get("day_counts") or []),
            }
    return models


def run_days(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """The first and last snapshot day of the run's partitions."""
    window = context.partition_time_window
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()


def day_stats(
    warehouse: WarehouseResource,
    manifest: Mapping[str, Any],
    contract: Contract,
    models: Iterable[str],
    first: dt.date,
    last: dt.date,
) -> dict[str, dict[str, Any]]:
    """What the on-call person wants on a partitioned table's materialization: the rows of the run's days, the
    entities among them (where the table has the entity key), for the labels the positives, and the rows of each
    column the model declares in meta ``day_counts`` (e.g. customers back after cancelling), in all and by day."""
    stats: dict[str, dict[str, Any]] = {}
    partitioned = partitioned_models(manifest)
    entity = ", ".join(f'"{c}"' for c in contract.entity)
    with warehouse.connect() as connection:
        for name in models:
            relation, column = partitioned[name]["relation"], partitioned[name]["day_column"]
            in_days = f"{column} between $first and $last"
            has_entity = set(contract.entity) <= set(partitioned[name]["columns"])
            entities = f"count(distinct ({entity})) filter (where {in_days})" if has_entity else "null"
            positives = f'count(*) filter (where {in_days} and "{contract.label}")'
            if name != contract.labels_model:
                positives = "null"
            rows, distinct, total, positive = connection.execute(
                f"select count(*) filter (where {in_days}), {entities}, count(*), {positives} from {relation}",
                {"first": first, "last": last},
            ).fetchone()
            stats[name] = {"dagster/row_count": rows, "rows_in_table": total}
            if distinct is not None:
                stats[name]["entities"] = distinct
            if positive is not None:
                stats[name]["positive_labels"] = positive
                stats[name]["positive_rate"] = round(positive / rows, 4) if rows else 0.0
            for flag in partitioned[name]["day_counts"]:
                by_day = connection.execute(
                    f'select {column}, count(*) filter (where "{flag}") from {relation} where {in_days} group by 1',
                    {"first": first, "last": last},
                ).fetchall()
                stats[name][flag] = sum(count for _, count in by_day)
                stats[name][f"{flag}_by_day"] = dg.MetadataValue.json(
                    {str(day): count for day, count in sorted(by_day)}
                )
    return stats


def build_feature_tables(partitions: dg.PartitionsDefinition, problem: Problem) -> dg.AssetsDefinition:
    """Every dbt model of the problem as an asset over ``partitions`` (one partition, one ``dbt build`` of its
    snapshot days)."""
    manifest, contract = problem.manifest, problem.contract

    @dbt_assets(
        manifest=manifest,
        project=problem.project,
        dagster_dbt_translator=FeatureTranslator(),
        partitions_def=partitions,
        backfill_policy=BACKFILL_POLICY,
        pool=WAREHOUSE_POOL,
        name="feature_tables",
    )
    def feature_tables(
        context: dg.AssetExecutionContext, dbt: DbtResource, warehouse: WarehouseResource
    ) -> Iterator[Any]:
        """`dbt build` of the partition's snapshot days: staging views over the raw lake, the daily activity, the
        feature snapshot and the labels that matured on those days, each model followed by its tests."""
        first, last = run_days(context)
        dbt_vars = dbt.snapshot_vars(first, last)
        context.log.info(f"dbt build with vars {dbt_vars}")
        invocation = dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context, raise_on_error=False)
        # dbt holds the warehouse file until it exits, so the materializations wait for it: the rows of the run's
        # days are read afterwards, to go on them. The tests' results are logged as they come, while dbt runs (a
        # night's 138 of them took 5 s to log after it).
        outputs = []
        for event in invocation.stream():
            if isinstance(event, dg.Output):
                outputs.append(event)
            else:
                yield event
        faults.write_point(faults.DBT)
        by_unique_id = {model["unique_id"]: name for name, model in partitioned_models(manifest).items()}

        def model_of(event: Any) -> str | None:
            unique_id = getattr(event, "metadata", {}).get("unique_id")
            return by_unique_id.get(getattr(unique_id, "value", unique_id))

        built = {model_of(event) for event in outputs} - {None}
        try:
            stats = day_stats(warehouse, manifest, contract, sorted(built), first, last)
        except duckdb.Error as error:  # the metadata must never hide the outcome of dbt itself
            context.log.warning(f"Could not read the rows of the run's days from the warehouse: {error}")
            stats = {}
        days = f"{first} .. {last}" if first != last else str(first)
        for event in outputs:
            extra = {**stats.get(model_of(event) or "", {}), "days": days, "dbt_vars": dg.MetadataValue.json(dbt_vars)}
            yield event.with_metadata({**event.metadata, **extra})
        error = invocation.get_error()
        if error is not None:
            raise error

    return feature_tables
