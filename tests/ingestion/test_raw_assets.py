"""The raw assets, run through Dagster's own ``materialize``: simulator and landing sources, idempotency, checks."""

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dagster_project import asset_keys
from dagster_project.defs import ingestion
from dagster_project.defs.ingestion.assets import QUARANTINE_SHARE_CHECK, VALID_ROWS_CHECK, VOLUME_CHECK
from dagster_project.defs.ingestion.volume import ACCEPT_LOW_VOLUME_TAG
from dagster_project.partitions import daily_partitions
from dagster_project.resources import build_resources
from dagster_project.settings import Settings, Source

DAY = "2025-01-03"


def _raw_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """The raw assets of the problem of ``settings``, one per declared table, as the definitions build them."""
    return list(ingestion.build_defs(settings).assets)


def _materialize(settings: Settings, partition: str = DAY, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        _raw_assets(settings),
        partition_key=partition,
        resources=build_resources(settings),
        raise_on_error=raise_on_error,
    )


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    return {
        event.asset_key.path[-1]: {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }


def test_simulated_day_lands_in_the_lake_with_exact_accounting(settings: Settings) -> None:
    result = _materialize(settings)
    assert result.success
    metadata = _metadata(result)
    assert set(metadata) == {"customers", "activity_events", "cancellations"}
    for table, meta in metadata.items():
        assert meta["rows_in"] == meta["rows_kept"] + meta["rows_quarantined"]
        stored = pq.read_table(settings.lake_root / "raw" / table / f"date={DAY}" / "part-0.parquet")
        assert stored.num_rows == meta["rows_kept"], table
    events = pq.read_table(settings.lake_root / "raw" / "activity_events" / f"date={DAY}" / "part-0.parquet")
    assert str(events.schema.field("event_date").type) == "date32[day]"
    customers = pq.read_table(settings.lake_root / "raw" / "customers" / f"date={DAY}" / "part-0.parquet")
    assert str(customers.schema.field("updated_at").type) == "timestamp[us]"  # Spark reads microseconds
    checks = {(c.asset_key.path[-1], c.check_name): c.passed for c in result.get_asset_check_evaluations()}
    assert len(checks) == 7 and all(checks.values())  # the volume check has no trailing days yet: not judged


def test_rematerializing_a_day_replaces_it(settings: Settings) -> None:
    path = settings.lake_root / "raw" / "activity_events" / f"date={DAY}"
    _materialize(settings)
    first = pd.read_parquet(path)
    _materialize(settings)
    assert sorted(p.name for p in path.iterdir()) == ["part-0.parquet"]  # no leftovers, no second file
    pd.testing.assert_frame_equal(first, pd.read_parquet(path))


def _write_landing(settings: Settings, table: str, content: str) -> Path:
    path = Path(settings.landing_root) / table / f"{DAY}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture
def landing_settings(settings: Settings) -> Settings:
    settings = settings.model_copy(update={"source": Source.landing})
    _write_landing(
        settings,
        "customers",
        "customer_id,signup_date,plan,contract,monthly_price,region,acquisition_channel,payment_method,updated_at\n"
        "A1,2024-06-01,basic,monthly,9.99,north,organic,card,2025-01-03T08:00:00\n"
        "A2,2025-01-03,premium,annual,19.54,south,referral,paypal,2025-01-03T09:30:00\n",
    )
    _write_landing(
        settings,
        "activity_events",
        "customer_id,event_date,logins,sessions,minutes_active,purchases,purchase_amount,support_tickets,payment_failures\n"
        "A1,2025-01-03,2,3,40.0,0,0,0,0\n"
        "A2,2025-01-03,1,1,12.5,1,-5.0,0,0\n",
    )
    _write_landing(settings, "cancellations", "customer_id,cancel_date,cancel_reason,cancelled_at\n")
    return settings


def test_landing_files_go_through_the_same_validation(landing_settings: Settings) -> None:
    result = _materialize(landing_settings)
    assert result.success
    metadata = _metadata(result)
    assert metadata["customers"]["rows_kept"] == 2
    assert metadata["activity_events"]["rows_in"] == 2
    assert metadata["activity_events"]["rows_quarantined"] == 1
    assert metadata["cancellations"]["rows_in"] == 0
    assert metadata["activity_events"]["source"].endswith(f"activity_events/{DAY}.csv")
    quarantine = pd.read_parquet(landing_settings.lake_root / "quarantine" / "activity_events" / f"date={DAY}")
    assert quarantine["failed_checks"].tolist() == ["purchase_amount:greater_than_or_equal_to(0)"]
    checks = {(c.asset_key.path[-1], c.check_name): c for c in result.get_asset_check_evaluations()}
    assert not checks[("activity_events", VALID_ROWS_CHECK)].passed
    assert not checks[("activity_events", QUARANTINE_SHARE_CHECK)].passed  # half the rows is far above 5%
    assert checks[("activity_events", QUARANTINE_SHARE_CHECK)].severity == dg.AssetCheckSeverity.ERROR
    assert checks[("customers", QUARANTINE_SHARE_CHECK)].passed


def test_a_file_missing_a_column_fails_the_run_naming_file_and_column(landing_settings: Settings) -> None:
    path = _write_landing(landing_settings, "cancellations", "customer_id,cancel_date,cancelled_at\n")
    result = _materialize(landing_settings, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.cause.message
    assert str(path) in message and "cancel_reason" in message


def test_a_missing_landing_file_fails_saying_where_it_was_expected(landing_settings: Settings) -> None:
    result = _materialize(landing_settings, partition="2025-01-04", raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert any("activity_events/2025-01-04.csv" in e.step_failure_data.error.cause.message for e in failures)


def test_an_absent_file_of_a_table_declared_absent_day_empty_is_a_day_of_no_rows(landing_settings: Settings) -> None:
    (Path(landing_settings.landing_root) / "cancellations" / f"{DAY}.csv").unlink()  # nobody cancelled that day
    result = _materialize(landing_settings)
    assert result.success
    cancellations = _metadata(result)["cancellations"]
    assert (cancellations["rows_in"], cancellations["rows_kept"], cancellations["rows_quarantined"]) == (0, 0, 0)
    assert "no landing file for table cancellations" in cancellations["source"]
    assert "absent_day: empty" in cancellations["source"]
    stored = pq.read_table(landing_settings.lake_root / "raw" / "cancellations" / f"date={DAY}" / "part-0.parquet")
    assert stored.num_rows == 0
    assert stored.column_names == ["customer_id", "cancel_date", "cancel_reason", "cancelled_at"]


def test_history_start_on_the_simulation_start(settings: Settings) -> None:
    partitions = _raw_assets(settings)[0].partitions_def
    assert partitions.get_first_partition_key() == settings.history_start.isoformat()
    assert dt.date.fromisoformat(partitions.get_last_partition_key()) < dt.date.today()


EVENTS_HEADER = (
    "customer_id,event_date,logins,sessions,minutes_active,purchases,purchase_amount,support_tickets,payment_failures\n"
)


def _activity_consumer(settings: Settings) -> dg.AssetsDefinition:
    @dg.asset(deps=[asset_keys.raw_table("activity_events")], partitions_def=daily_partitions(settings))
    def activity_consumer() -> int:
        """Stands in for dbt: the first thing downstream of the raw activity."""
        return 1

    return activity_consumer


def _run_activity(settings: Settings, day: str | None, tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
    events = next(a for a in _raw_assets(settings) if a.key == asset_keys.raw_table("activity_events"))
    return dg.materialize(
        [events, _activity_consumer(settings)],
        partition_key=day,
        resources=build_resources(settings),
        tags=tags,
        raise_on_error=False,
    )


@pytest.mark.parametrize("override", [False, True])
def test_a_header_only_activity_day_is_blocked_unless_accepted(settings: Settings, override: bool) -> None:
    settings = settings.model_copy(update={"source": Source.landing})
    for day in ("2025-01-01", "2025-01-02", "2025-01-03"):
        rows = "".join(f"A{i},{day},1,1,5.0,0,0,0,0\n" for i in range(4))
        _write_landing_day(settings, "activity_events", day, EVENTS_HEADER + rows)
        assert _run_activity(settings, day).success
    _write_landing_day(settings, "activity_events", "2025-01-04", EVENTS_HEADER)
    tags = {ACCEPT_LOW_VOLUME_TAG: "customers, activity_events"} if override else None
    result = _run_activity(settings, "2025-01-04", tags)
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == VOLUME_CHECK]
    assert check.passed is override
    assert check.metadata["trailing_rows"].value == [4, 4, 4]
    assert check.metadata["overridden"].value is override
    consumer = dg.AssetKey("activity_consumer")
    consumer_ran = any(e.asset_key == consumer for e in result.get_asset_materialization_events())
    assert consumer_ran is override  # the blocking check stops what is downstream of an empty day


def _write_landing_day(settings: Settings, table: str, day: str, content: str) -> None:
    path = Path(settings.landing_root) / table / f"{day}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")


RANGE_TAGS = {"dagster/asset_partition_range_start": "2025-01-01", "dagster/asset_partition_range_end": "2025-01-04"}


def test_a_range_of_days_is_one_run_with_each_day_accounted_on_its_own_partition(settings: Settings) -> None:
    result = dg.materialize(_raw_assets(settings), tags=RANGE_TAGS, resources=build_resources(settings))
    assert result.success
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "activity_events"]
    by_day = {e.partition: {k: v.value for k, v in e.materialization.metadata.items()} for e in events}
    assert sorted(by_day) == ["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04"]
    for day, meta in by_day.items():
        stored = pq.read_table(settings.lake_root / "raw" / "activity_events" / f"date={day}" / "part-0.parquet")
        assert meta["rows_kept"] == stored.num_rows  # each day its own count, not the range's
        assert meta["rows_in"] == meta["rows_kept"] + meta["rows_quarantined"]
    assert len({meta["content_fingerprint"] for meta in by_day.values()}) == 4
    checks = [c for c in result.get_asset_check_evaluations() if c.asset_key.path[-1] == "activity_events"]
    assert {c.check_name for c in checks} == {VALID_ROWS_CHECK, QUARANTINE_SHARE_CHECK, VOLUME_CHECK}
    assert all(c.passed for c in checks)
    assert all(c.metadata["days"].value == "2025-01-01..2025-01-04" for c in checks)


def test_a_check_over_a_range_fails_on_one_bad_day_and_names_it(settings: Settings) -> None:
    settings = settings.model_copy(update={"source": Source.landing})
    for day in ("2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04"):
        rows = "".join(f"A{i},{day},1,1,5.0,0,0,0,0\n" for i in range(4))
        if day == "2025-01-03":
            rows += f"A9,{day},-1,1,5.0,0,0,0,0\n"  # negative logins: quarantined
        _write_landing_day(settings, "activity_events", day, EVENTS_HEADER + rows)
    result = _run_activity(settings, None, RANGE_TAGS)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks[VALID_ROWS_CHECK].passed
    assert checks[VALID_ROWS_CHECK].metadata["days_with_quarantined_rows"].value == "2025-01-03"
    assert checks[VALID_ROWS_CHECK].metadata["rows_quarantined"].value == 1
    counts = {
        e.partition: e.materialization.metadata["rows_quarantined"].value
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "activity_events"
    }
    assert counts == {"2025-01-01": 0, "2025-01-02": 0, "2025-01-03": 1, "2025-01-04": 0}
