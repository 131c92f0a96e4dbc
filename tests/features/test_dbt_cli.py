"""The dbt project on its own: the dbt CLI builds it over the raw layer, documents it, and checks freshness."""

import datetime as dt
import json
import re
import subprocess

from feature_support import SIMULATED_DAYS, SimulatedBase, query, run_dbt, write_raw

from dagster_project.resources import DbtResource
from dagster_project.settings import Settings


def test_dbt_build_from_the_cli_alone_passes_every_test(simulated_base: SimulatedBase) -> None:
    assert "Completed successfully" in simulated_base.build_output
    assert " ERROR=0 " in simulated_base.build_output and " SKIP=0 " in simulated_base.build_output
    settings = simulated_base.settings
    # The profile put the warehouse where the Python settings say it is, from PLATFORM_DATA_ROOT alone, with a
    # schema per layer.
    schemas = query(settings, "select schema_name from information_schema.schemata")
    assert {"staging", "intermediate", "marts"} <= {row[0] for row in schemas}
    snapshot_days = query(settings, "select distinct snapshot_date from marts.customer_features order by 1")
    assert [row[0] for row in snapshot_days] == SIMULATED_DAYS
    customers, features = query(
        settings,
        "select count(*), (select count(*) from information_schema.columns"
        " where table_schema = 'marts' and table_name = 'customer_features') - 2"
        " from marts.customer_features where snapshot_date = date '2025-01-05'",
    )[0]
    assert customers > 100 and features >= 20
    # Horizon 2: the snapshots of 01-01 .. 01-03 have matured by 01-05, not those of 01-04 and 01-05.
    labelled = query(settings, "select distinct snapshot_date from marts.churn_labels order by 1")
    assert [row[0] for row in labelled] == SIMULATED_DAYS[:3]


def test_dbt_docs_generate_documents_every_model(simulated_base: SimulatedBase) -> None:
    assert "Catalog written" in simulated_base.docs_output
    target = simulated_base.settings.data_root / "dbt_cli" / "target"
    catalog = json.loads((target / "catalog.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    models = {node["name"]: node for node in manifest["nodes"].values() if node["resource_type"] == "model"}
    assert set(models) == {
        "stg_customers",
        "stg_activity_events",
        "stg_cancellations",
        "stg_raw_partitions",
        "int_customer_activity_daily",
        "customer_features",
        "churn_labels",
    }
    for name, node in models.items():
        assert node["description"], f"{name} has no description"
        assert node["unique_id"] in catalog["nodes"], f"{name} is not in the catalog"
        undocumented = [column for column, spec in node["columns"].items() if not spec["description"]]
        assert not undocumented, f"{name}: undocumented columns {undocumented}"
        tests = [
            n
            for n in manifest["nodes"].values()
            if n["resource_type"] == "test" and n["attached_node"] == node["unique_id"]
        ]
        assert tests, f"{name} has no test"
    sources = manifest["sources"]
    assert {s["name"] for s in sources.values()} == {"customers", "activity_events", "cancellations"}
    assert all(s["description"] and s["freshness"]["error_after"]["count"] for s in sources.values())
    # At least one custom generic test beside dbt's own.
    kinds = {n["test_metadata"]["name"] for n in manifest["nodes"].values() if n["resource_type"] == "test"}
    # (No plain `unique`: a customer who came back may cancel twice; one cancellation a day is a combination.)
    assert {"not_null", "accepted_values", "relationships"} <= kinds
    assert {"unique_combination_of_columns", "between", "relationships_composite"} <= kinds
    # The rules of the partitioned models have unit tests, and the plain `dbt build` ran every one of them.
    tested_models = {test["model"] for test in manifest["unit_tests"].values()}
    assert tested_models == {"int_customer_activity_daily", "customer_features", "churn_labels"}
    assert f"{len(manifest['unit_tests'])} unit tests" in simulated_base.build_output


def test_source_freshness_reads_the_newest_partition_day(settings: Settings) -> None:
    today = dt.datetime.now(dt.UTC).date()
    # Customers and activity arrived yesterday; cancellations last came five days ago (error after four).
    write_raw(settings.lake_root, "customers", today - dt.timedelta(days=1), [])
    write_raw(settings.lake_root, "activity_events", today - dt.timedelta(days=1), [])
    write_raw(settings.lake_root, "cancellations", today - dt.timedelta(days=5), [])
    result = run_dbt(settings, "source", "freshness", check=False)
    assert result.returncode != 0
    sources = json.loads((settings.data_root / "dbt_cli" / "target" / "sources.json").read_text())
    status = {r["unique_id"].rsplit(".", 1)[-1]: r["status"] for r in sources["results"]}
    # Empty partitions count: freshness is about what was loaded, not about rows.
    assert status == {"customers": "pass", "activity_events": "pass", "cancellations": "error"}


def test_the_dbt_resource_knows_the_version_the_dbt_executable_reports(settings: Settings) -> None:
    # The resource reads it from the dbt-core package instead of running `dbt --version` before each run.
    resource = DbtResource.from_settings(settings)
    reported = subprocess.run([resource.dbt_executable, "--version"], capture_output=True, text=True, check=True)
    assert str(resource._cli_version) == re.search(r"(\d+\.\d+\.\d+)", reported.stdout).group(1)
