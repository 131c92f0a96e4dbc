"""A corrected raw day reaches the later days whose windows read it: real Dagster runs on one instance ingest a
few days from landing files and build their features; the source then corrects an earlier day, which is ingested
again. The raw asset says the day was corrected, the `rebuild_after_corrections` sensor requests one ranged run from
that day to the last feature day built, and that run gives every window reading the day its corrected values."""

import datetime as dt
from pathlib import Path

import dagster as dg
from feature_support import HORIZON_DAYS, days, query_dicts

from dagster_project import asset_keys
from dagster_project.defs import features, ingestion
from dagster_project.defs.automation.corrections import TAG_CORRECTED, build_corrections_sensor
from dagster_project.defs.ingestion.assets import CORRECTED_METADATA
from dagster_project.partitions import RANGE_END, RANGE_START
from dagster_project.problem import load_problem
from dagster_project.resources import build_resources
from dagster_project.settings import Settings, SimulatorSettings, Source, Thresholds
from examples.subscription import simulator

DAYS = days("2025-01-01", "2025-01-06")
CORRECTED = dt.date(2025, 1, 2)
FEATURES = dg.AssetKey(["features", "customer_features"])
RAW_EVENTS = dg.AssetKey(["raw", "activity_events"])


def _write_landing(settings: Settings, table: str, date: dt.date, frame) -> None:
    path = settings.landing_root / table / f"{date}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def _assets(settings: Settings) -> list[dg.AssetsDefinition]:
    return [*ingestion.build_defs(settings).assets, *features.build_defs(settings).assets]


RAW = dg.AssetSelection.key_prefixes("raw")
FEATURE_TABLES = dg.AssetSelection.all() - RAW


def _run(
    settings: Settings,
    instance: dg.DagsterInstance,
    selection: dg.AssetSelection,
    first: dt.date,
    last: dt.date | None = None,
) -> None:
    """One run, as the nightly (one day) or a backfill (a range, one dbt build) launches it."""
    tags = {}
    if last is not None:
        tags = {"dagster/asset_partition_range_start": str(first), "dagster/asset_partition_range_end": str(last)}
    dg.materialize(
        _assets(settings),
        selection=selection,
        partition_key=None if last is not None else str(first),
        tags=tags,
        instance=instance,
        resources=build_resources(settings),
    )


def _tick(settings: Settings, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    """One evaluation of the real corrections sensor over the problem's raw tables."""
    problem = load_problem(settings)
    sensor = build_corrections_sensor(
        [asset_keys.raw_table(node["name"]) for node in problem.raw_tables],
        asset_keys.lake_export(problem.contract.features_model),
    )
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))


def _logins_7d(settings: Settings) -> dict[tuple[str, dt.date], int]:
    rows = query_dicts(settings, "select customer_id, snapshot_date, logins_7d from marts.customer_features")
    return {(row["customer_id"], row["snapshot_date"]): row["logins_7d"] for row in rows}


def test_a_corrected_day_rebuilds_the_later_days_whose_windows_read_it(tmp_path: Path) -> None:
    settings = Settings(
        data_root=tmp_path / "data",
        source=Source.landing,
        simulator=SimulatorSettings(customers=120),
        thresholds=Thresholds(churn_horizon_days=HORIZON_DAYS),
    )
    for day in DAYS:
        for table, make in simulator.TABLES.items():
            _write_landing(settings, table, day, make(settings.simulation, day))
    instance = dg.DagsterInstance.ephemeral()
    for day in DAYS:
        _run(settings, instance, RAW, day)
    _run(settings, instance, FEATURE_TABLES, DAYS[0], DAYS[-1])  # a backfill of the history: one ranged run
    quiet = _tick(settings, instance, None)
    assert not quiet.run_requests, "nothing was corrected"
    before = _logins_7d(settings)

    # Re-ingesting a day unchanged is no correction.
    _run(settings, instance, dg.AssetSelection.assets(RAW_EVENTS), CORRECTED)
    assert not _tick(settings, instance, quiet.cursor).run_requests

    # The source corrects 01-02: every customer active that day logged in once more.
    corrected = simulator.activity_events(settings.simulation, CORRECTED)
    corrected["logins"] = corrected["logins"] + 1
    _write_landing(settings, "activity_events", CORRECTED, corrected)
    _run(settings, instance, dg.AssetSelection.assets(RAW_EVENTS), CORRECTED)
    record = instance.fetch_materializations(RAW_EVENTS, limit=1).records[0]
    assert record.asset_materialization.metadata[CORRECTED_METADATA].value is True

    # The sensor names the stale days (the corrected one and every later day built) and requests their rebuild.
    tick = _tick(settings, instance, quiet.cursor)
    [request] = tick.run_requests
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (str(CORRECTED), str(DAYS[-1]))
    assert request.tags[TAG_CORRECTED] == f"{RAW_EVENTS.to_user_string()}@{CORRECTED}"
    assert not _tick(settings, instance, tick.cursor).run_requests, "one correction, one rebuild"

    # The requested run: one ranged run of the feature tables. Every window that reads the corrected day changes.
    _run(settings, instance, FEATURE_TABLES, CORRECTED, DAYS[-1])
    rebuilt = _logins_7d(settings)
    later = [day for day in DAYS if day > CORRECTED]
    assert {day for (_, day), value in rebuilt.items() if value != before[_, day]} == {CORRECTED, *later}
