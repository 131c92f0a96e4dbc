"""The feature domain in Dagster: every dbt model an asset below the raw assets, every dbt test an asset check,
one daily partition one dbt build of that day, idempotent, and exported to the lake for the offline store."""

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
from dagster_dbt import DbtProject
from feature_support import SimulatedBase, copy_data_root, query, query_dicts, simulated_settings, write_raw
from feature_support import write_simulated_raw as write_simulated

from dagster_project.defs import features
from dagster_project.problem import load_problem, manifest_is_stale, prepare_manifest
from dagster_project.resources import build_resources
from dagster_project.settings import DBT_PROJECT_DIR, Settings

# The default problem's manifest (the subscription example), as the definitions read it.
MANIFEST = load_problem(Settings()).manifest

DAY = dt.date(2025, 1, 6)  # the partition the tests run: the base holds the days before it


def _manifest_nodes(resource_type: str) -> list[dict]:
    return [node for node in MANIFEST["nodes"].values() if node["resource_type"] == resource_type]


def _prepared(base: SimulatedBase, tmp_path: Path) -> Settings:
    """A copy of the simulated base with the raw partitions of DAY added: ready for DAY's partition run."""
    settings = simulated_settings(tmp_path / "data")
    copy_data_root(base.settings.data_root, settings.data_root)
    write_simulated(settings.lake_root, settings.simulation, [DAY])
    return settings


def _materialize(settings: Settings, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        features.build_defs(settings).assets,
        partition_key=DAY.isoformat(),
        resources=build_resources(settings),
        raise_on_error=raise_on_error,
    )


def _check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        event.asset_check_evaluation_data.check_name: event.asset_check_evaluation_data.passed
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }


def _materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        event.asset_key.to_user_string(): {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }


def _day_rows(settings: Settings) -> dict[str, list[dict]]:
    return {
        "activity": query_dicts(
            settings,
            "select * from intermediate.int_customer_activity_daily where activity_date = $d order by customer_id",
            {"d": DAY},
        ),
        "features": query_dicts(
            settings, "select * from marts.customer_features where snapshot_date = $d order by customer_id", {"d": DAY}
        ),
        "labels": query_dicts(
            settings, "select * from marts.churn_labels where matured_on = $d order by customer_id", {"d": DAY}
        ),
    }


def test_every_dbt_model_is_an_asset_below_the_raw_assets_and_every_test_a_check() -> None:
    from dagster_project.definitions import defs as load_definitions

    defs = load_definitions()

    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    models = {node["name"]: node for node in _manifest_nodes("model")}
    expected = {f"{node['fqn'][1]}/{name}" for name, node in models.items()}
    assert expected == {
        "staging/stg_customers",
        "staging/stg_activity_events",
        "staging/stg_cancellations",
        "staging/stg_raw_partitions",
        "intermediate/int_customer_activity_daily",
        "features/customer_features",
        "features/churn_labels",
    }
    assert expected | {"lake/customer_features", "lake/churn_labels"} <= keys

    def parents(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey.from_user_string(key)).parent_keys}

    # The dbt sources are the ingestion domain's raw assets themselves: one graph, raw to features to lake.
    assert parents("staging/stg_customers") == {"raw/customers"}
    assert parents("staging/stg_raw_partitions") == {"raw/customers", "raw/activity_events", "raw/cancellations"}
    assert "features/customer_features" in parents("lake/customer_features")
    assert "features/churn_labels" in parents("lake/churn_labels")
    # Day D of the daily activity waits for day D - 1: Dagster builds the days in order.
    key = dg.AssetKey.from_user_string("intermediate/int_customer_activity_daily")
    assert key in graph.get(key).parent_keys
    assert graph.get_partition_mapping(key, key) == dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
    for name in expected:
        assert graph.get(dg.AssetKey.from_user_string(name)).partitions_def is not None

    # Every dbt data test is an asset check on the asset of the model it tests, with a description.
    tests = _manifest_nodes("test")
    feature_tables = defs.resolve_assets_def(dg.AssetKey(["features", "customer_features"]))
    checks = {spec.key: spec for spec in feature_tables.check_specs}
    assert len(checks) == len(tests) > 100
    for test in tests:
        model = MANIFEST["nodes"][test["attached_node"]]
        check_key = dg.AssetCheckKey(dg.AssetKey([model["fqn"][1], model["name"]]), test["name"])
        assert check_key in checks, test["name"]
        assert checks[check_key].description, test["name"]
        assert checks[check_key].blocking  # severity error: a failure stops what depends on it
    # Unit tests check the SQL on fixtures, not the data of a day: none of them is an asset check.
    assert MANIFEST["unit_tests"]
    assert not {check.name for check in checks} & {test["name"] for test in MANIFEST["unit_tests"].values()}


def test_a_partition_builds_its_day_passes_every_check_and_rerunning_it_changes_nothing(
    simulated_base: SimulatedBase, tmp_path: Path
) -> None:
    settings = _prepared(simulated_base, tmp_path)
    first = _materialize(settings)
    checks = _check_results(first)
    feature_tables = next(a for a in features.build_defs(settings).assets if a.op.name == "feature_tables")
    assert len(checks) == len(feature_tables.check_specs)
    assert all(checks.values()), [name for name, passed in checks.items() if not passed]

    # The partition's dbt build ran the unit tests too (before the models they test), and they passed.
    run_results = [json.loads(path.read_text()) for path in (settings.data_root / "dbt").glob("*/run_results.json")]
    unit_tests = [r for results in run_results for r in results["results"] if r["unique_id"].startswith("unit_test.")]
    assert len(unit_tests) == len(MANIFEST["unit_tests"]) and {r["status"] for r in unit_tests} == {"pass"}

    rows = _day_rows(settings)
    customers = len(rows["features"])
    assert customers > 100 and len(rows["activity"]) == customers
    assert {r["snapshot_date"] for r in rows["labels"]} == {DAY - dt.timedelta(days=2)}  # horizon 2

    metadata = _materializations(first)
    assert metadata["features/customer_features"]["dagster/row_count"] == customers
    assert metadata["features/churn_labels"]["dagster/row_count"] == len(rows["labels"])
    assert metadata["features/customer_features"]["dbt_vars"]["snapshot_date"] == DAY.isoformat()
    assert metadata["lake/customer_features"]["dagster/row_count"] == customers
    # The customers back after cancelling, counted per day (meta day_counts): the simulator makes none.
    activity = metadata["intermediate/int_customer_activity_daily"]
    assert activity["resubscribed"] == sum(r["resubscribed"] for r in rows["activity"]) == 0
    assert activity["resubscribed_by_day"] == {DAY.isoformat(): 0}

    # The export: the day's rows, as the warehouse holds them, with their provenance in the file.
    path = settings.lake_root / "features" / "customer_features" / f"date={DAY}" / "part-0.parquet"
    exported = pq.read_table(path)
    assert exported.num_rows == customers
    assert exported.column_names[:2] == ["customer_id", "snapshot_date"]
    [model] = [n for n in _manifest_nodes("model") if n["name"] == "customer_features"]
    declared = [
        name for name, column in model["columns"].items() if (column.get("config", {}).get("meta") or {}).get("feature")
    ]
    assert set(declared) == set(exported.column_names) - {"customer_id", "snapshot_date"}
    provenance = {k.decode(): v.decode() for k, v in exported.schema.metadata.items() if not k.startswith(b"pandas")}
    assert provenance["dbt_model"] == "model.churn_platform.customer_features"
    assert provenance["feature_set_version"] == "1"
    labels = pq.read_table(settings.lake_root / "features" / "churn_labels" / f"date={DAY}" / "part-0.parquet")
    assert labels.num_rows == len(rows["labels"])

    counts_sql = (
        "select (select count(*) from intermediate.int_customer_activity_daily),"
        " (select count(*) from marts.customer_features), (select count(*) from marts.churn_labels)"
    )
    counts = query(settings, counts_sql)
    second = _materialize(settings)
    assert all(_check_results(second).values())
    assert query(settings, counts_sql) == counts
    assert _day_rows(settings) == rows
    assert pq.read_table(path).equals(exported)


def test_a_planted_bad_row_fails_the_matching_check(simulated_base: SimulatedBase, tmp_path: Path) -> None:
    settings = _prepared(simulated_base, tmp_path)
    # An event of a customer nobody knows: pandera checks one file at a time and lets it into the raw layer.
    events = pq.read_table(settings.lake_root / "raw" / "activity_events" / f"date={DAY}" / "part-0.parquet")
    stranger = {**events.slice(0, 1).to_pylist()[0], "customer_id": "C9999999"}
    write_raw(settings.lake_root, "activity_events", DAY, [*events.to_pylist(), stranger])

    result = _materialize(settings, raise_on_error=False)
    assert not result.success
    checks = _check_results(result)
    relationship = next(
        test["name"]
        for test in _manifest_nodes("test")
        if test["test_metadata"]["name"] == "relationships"
        and test["attached_node"] == "model.churn_platform.stg_activity_events"
    )
    assert checks.pop(relationship) is False
    assert checks and all(checks.values())  # the other checks that ran passed
    # The failure blocks what depends on it: no features were built for the day.
    assert "features/customer_features" not in _materializations(result)
    assert query(settings, "select count(*) from marts.customer_features where snapshot_date = $d", {"d": DAY}) == [
        (0,)
    ]


def test_the_manifest_is_built_when_missing_or_stale(tmp_path: Path, settings: Settings) -> None:
    copy, problem = tmp_path / "dbt_project", tmp_path / "examples" / settings.problem_dir.name
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    shutil.copytree(settings.problem_dir, problem, ignore=shutil.ignore_patterns("__pycache__"))
    project = DbtProject(project_dir=copy, profiles_dir=copy, target_path=Path("target") / problem.name)
    assert manifest_is_stale(project, problem)  # a fresh clone has none
    prepare_manifest(project, problem)
    assert not manifest_is_stale(project, problem)
    nodes = json.loads(project.manifest_path.read_text())["nodes"]
    assert "model.churn_platform.customer_features" in nodes
    # dbt writes a model's compiled SQL below the target folder by its path: an absolute one would overwrite the model.
    assert not [n["original_file_path"] for n in nodes.values() if Path(n["original_file_path"]).is_absolute()]
    # Editing a model of the problem makes the manifest stale: the next load parses again (prepare_manifest).
    model = problem / "models" / "features" / "customer_features.sql"
    model.write_text(model.read_text() + "\n")
    assert manifest_is_stale(project, problem)
    prepare_manifest(project, problem)
    # So does pointing the same project at another problem folder.
    assert manifest_is_stale(project, tmp_path / "examples" / "another")
