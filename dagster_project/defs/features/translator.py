"""How dbt resources become Dagster assets and checks: one translator, no per-model special cases."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings
from dagster_dbt.dbt_project import DbtProject

from dagster_project import asset_keys
from dagster_project.problem import RAW_SOURCE

# A platform model that reads every declared raw table without naming them in SQL (its tables come from the graph
# at run time, so dbt records no dependency) says so in its meta; the translator adds the lineage dbt cannot see.
READS_EVERY_RAW_TABLE = "reads_every_raw_table"


def _describe_test(test: Mapping[str, Any]) -> str:
    """A test's own description, or one made from what it is: its kind, its column, its arguments."""
    if test.get("description"):
        return test["description"]
    metadata = test.get("test_metadata") or {}
    kind = metadata.get("name") or "singular test"
    model = (test.get("attached_node") or "").rsplit(".", 1)[-1]
    column = test.get("column_name")
    target = f"`{model}.{column}`" if column else f"`{model}`"
    arguments = {
        name: value for name, value in (metadata.get("kwargs") or {}).items() if name not in ("model", "column_name")
    }
    details = "; ".join(f"{name}: {value}" for name, value in arguments.items())
    return f"dbt test `{kind}` on {target}" + (f" ({details})" if details else "") + "."


class FeatureTranslator(DagsterDbtTranslator):
    """Keys follow the project's folders: ``staging/stg_customers``, ``intermediate/...``, ``features/...``.

    Sources keep dagster-dbt's ``<source>/<table>``, so ``raw/customers`` is the very asset the ingestion domain
    materializes and the dbt models hang below it in one graph. Every dbt data test is an asset check, with a
    description the UI can show.
    """

    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        # fqn is [project, folder, ..., name]: the first folder under models/ is the layer.
        fqn = dbt_resource_props["fqn"]
        layer = fqn[1:2] if len(fqn) > 2 else []
        return dg.AssetKey([*layer, dbt_resource_props["name"]])

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        meta = (manifest["nodes"].get(unique_id, {}).get("config") or {}).get("meta") or {}
        if not meta.get(READS_EVERY_RAW_TABLE):
            return spec
        known = {dep.asset_key for dep in spec.deps}
        raw = [
            dg.AssetKey([source["source_name"], source["name"]])
            for source in manifest["sources"].values()
            if source["source_name"] == RAW_SOURCE
        ]
        return spec.replace_attributes(deps=[*spec.deps, *(dg.AssetDep(key) for key in raw if key not in known)])

    def get_partition_mapping(
        self, dbt_resource_props: Mapping[str, Any], dbt_parent_resource_props: Mapping[str, Any]
    ) -> dg.PartitionMapping | None:
        # A model that says it depends on its own earlier days (meta dagster.has_self_dependency) depends on the
        # day before: Dagster then builds the days in order, in backfills too, so that day D never runs on a
        # warehouse that lacks the days before it.
        if dbt_resource_props["unique_id"] == dbt_parent_resource_props["unique_id"]:
            return dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
        return None

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return asset_keys.FEATURES_GROUP

    def get_asset_check_spec(
        self,
        asset_spec: dg.AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: DbtProject | None,
    ) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None:
            return None
        test = manifest["nodes"][unique_id]
        description = _describe_test(test)
        tested = manifest["nodes"].get(test.get("attached_node") or "", {})
        if (tested.get("config", {}).get("meta") or {}).get("run_days_column"):
            description += " A partition's run checks the rows of its own days."
        return dg.AssetCheckSpec(
            name=spec.name,
            asset=spec.asset_key,
            description=description,
            additional_deps=spec.additional_deps,
            metadata=spec.metadata,
            blocking=spec.blocking,
        )
