"""The feature tables of each day, exported from the warehouse to the lake as Parquet for the Spark offline store.

``<lake>/features/<feature model>/date=D/part-0.parquet`` holds the snapshot of day D;
``<lake>/features/<label model>/date=D/part-0.parquet`` the labels that matured on day D (snapshot D - N); the
models are the contract's, the layout is ``dagster_project/lake.py``'s. Each file is replaced atomically, so
re-exporting a day is idempotent and a reader never sees half a file.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa
from dagster_dbt import get_asset_key_for_model

from dagster_project import asset_keys, faults
from dagster_project.defs.features.assets import WAREHOUSE_POOL, partitioned_models, run_days
from dagster_project.lake import FEATURES, PARTITION_FILE, write_partition_atomically
from dagster_project.partitions import ranged_asset
from dagster_project.problem import Problem
from dagster_project.resources import LakeResource, WarehouseResource
from spark_jobs.contract import DBT_MODEL_CHECKSUM


def _model_node(manifest: Mapping[str, Any], model: str) -> Mapping[str, Any]:
    return next(n for n in manifest["nodes"].values() if n["resource_type"] == "model" and n["name"] == model)


def read_day(
    connection: duckdb.DuckDBPyConnection, relation: str, day_column: str, day: dt.date, order_by: Sequence[str]
) -> pa.Table:
    """One day of a warehouse table, in a stable order (its key), so that exporting a day twice gives the same
    file."""
    order = ", ".join(f'"{c}"' for c in order_by)
    return connection.sql(
        f"select * from {relation} where {day_column} = $day order by {order}", params={"day": day}
    ).to_arrow_table()


def _export_asset(
    manifest: Mapping[str, Any],
    model: str,
    order_by: Sequence[str],
    feature_tables: dg.AssetsDefinition,
    partitions: dg.PartitionsDefinition,
    description: str,
    allow_empty_day: bool,
) -> dg.AssetsDefinition:
    models = partitioned_models(manifest)
    if model not in models:
        raise ValueError(f"dbt model {model} declares no meta run_days_column: the lake export needs its day column")
    spec = models[model]
    upstream = get_asset_key_for_model([feature_tables], model)
    # Written into each file's Parquet metadata too: which definition of the table produced the file. The checksum
    # is the features' lineage: the offline store and training carry it on from the file, under the same key.
    provenance = {"dbt_model": spec["unique_id"], DBT_MODEL_CHECKSUM: spec["checksum"]}
    version = (_model_node(manifest, model)["config"].get("meta") or {}).get("feature_set_version")
    if version is not None:
        provenance["feature_set_version"] = str(version)

    @ranged_asset(
        key=asset_keys.lake_export(model),
        deps=[upstream],
        partitions_def=partitions,
        pool=WAREHOUSE_POOL,
        group_name=asset_keys.FEATURES_GROUP,
        kinds={"duckdb", "parquet"},
        description=description,
        metadata={"lake_layout": f"{FEATURES}/{model}/date=YYYY-MM-DD/{PARTITION_FILE}", **provenance},
    )
    def _export(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, lake: LakeResource
    ) -> dg.MaterializeResult:
        first, last = run_days(context)
        rows_by_day: dict[str, int] = {}
        day, path, columns = first, None, 0
        # One connection for the range, a query per day: a range's days are never held in memory together.
        with warehouse.connect() as connection:
            while day <= last:
                table = read_day(connection, spec["relation"], spec["day_column"], day, order_by)
                if table.num_rows == 0 and not allow_empty_day:
                    raise dg.Failure(
                        f"{spec['relation']} holds no row for {day}: materialize {upstream.to_user_string()} "
                        "for that day first."
                    )
                table = table.replace_schema_metadata({**(table.schema.metadata or {}), **provenance})
                path = lake.partition_path(FEATURES, model, day)
                write_partition_atomically(table, path)
                faults.write_point(faults.EXPORT)
                rows_by_day[day.isoformat()] = table.num_rows
                columns = len(table.schema)
                day += dt.timedelta(days=1)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(rows_by_day.values()),
                "rows_by_day": dg.MetadataValue.json(rows_by_day),
                "path": dg.MetadataValue.path(str(path)),
                "columns": columns,
                **provenance,
            }
        )

    return _export


def build_export_assets(
    feature_tables: dg.AssetsDefinition, partitions: dg.PartitionsDefinition, problem: Problem
) -> list[dg.AssetsDefinition]:
    """The exports of the feature snapshot and the matured labels, downstream of ``feature_tables``."""
    contract = problem.contract
    features, labels = contract.features_model, contract.labels_model
    return [
        _export_asset(
            problem.manifest,
            features,
            contract.snapshot_keys,
            feature_tables,
            partitions,
            description=(
                f"The day's feature snapshot (`{features}`), exported from DuckDB to "
                f"`<lake>/{FEATURES}/{features}/date=<day>/{PARTITION_FILE}` for the Spark offline store. Each file "
                "carries the dbt model's checksum and the feature set version in its Parquet metadata."
            ),
            allow_empty_day=False,
        ),
        _export_asset(
            problem.manifest,
            labels,
            (*contract.entity, contract.label_as_of),
            feature_tables,
            partitions,
            description=(
                f"The labels that matured on the day (`{labels}`: the snapshot of the day minus the horizon), "
                f"exported to `<lake>/{FEATURES}/{labels}/date=<day>/{PARTITION_FILE}`. Empty during the first N "
                "days of history, before any label has matured."
            ),
            allow_empty_day=True,
        ),
    ]
