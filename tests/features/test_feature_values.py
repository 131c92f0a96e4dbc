"""Features and labels of a tiny history built by hand, against values computed by hand.

The history runs from 2024-12-01 (the first day of history) to 2025-01-12; the snapshot checked is D = 2025-01-10.
Each customer stands for one edge: window bounds (D - w outside the w-day window, D - w + 1 inside), a record change
one microsecond before the end of D and one exactly at it, a sign-up on D, a customer with no activity at all,
a cancellation on D, a cancellation inside and outside the label horizon, a sign-up after D. The history is built
in two steps to prove that no feature of D reads anything after the end of D: first the lake holds days up to D
only, then the days after D arrive (with absurd values) and D is built again.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from feature_support import copy_data_root, day, days, query, query_dicts, run_dbt, write_raw

from dagster_project.settings import Settings

D = day("2025-01-10")


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def record(customer: str, signup: str, updated_at: str, plan: str = "basic", price: float = 9.99) -> dict:
    return {
        "customer_id": customer,
        "signup_date": day(signup),
        "plan": plan,
        "contract": "monthly",
        "monthly_price": price,
        "region": "north",
        "acquisition_channel": "organic",
        "payment_method": "card",
        "updated_at": ts(updated_at),
    }


def event(customer: str, date: str, **measures: float) -> dict:
    row = {
        "customer_id": customer,
        "event_date": day(date),
        "logins": 0,
        "sessions": 0,
        "minutes_active": 0.0,
        "purchases": 0,
        "purchase_amount": 0.0,
        "support_tickets": 0,
        "payment_failures": 0,
    }
    row.update(measures)
    return row


def cancellation(customer: str, at: str) -> dict:
    return {"customer_id": customer, "cancel_date": ts(at).date(), "cancel_reason": "price", "cancelled_at": ts(at)}


# What each raw table holds on each day; days not listed hold an empty partition.
CUSTOMERS = {
    "2024-12-01": [
        record("A", "2024-06-01", "2024-12-01 08:00:00"),
        record("X", "2024-03-01", "2024-12-01 08:00:00"),  # cancels on D
        record("E", "2024-09-01", "2024-12-01 08:00:00"),  # cancels on D + 2
    ],
    "2024-12-20": [record("B", "2024-12-20", "2024-12-20 08:00:00")],  # signs up within history
    # A's plan changes one microsecond before the end of D: the snapshot of D has it.
    "2025-01-10": [
        record("C", "2025-01-10", "2025-01-10 09:00:00"),  # signs up on D
        record("A", "2024-06-01", "2025-01-10 23:59:59.999999", plan="standard", price=12.49),
    ],
}
ACTIVITY = {
    "2024-12-11": [event("A", "2024-12-11", logins=10000)],  # D - 30: in the 90-day window only
    "2024-12-12": [event("A", "2024-12-12", logins=1000)],  # D - 29: in the 30-day window
    "2025-01-03": [event("A", "2025-01-03", logins=100, sessions=100, minutes_active=50.0)],  # D - 7: 30d only
    "2025-01-04": [
        event("A", "2025-01-04", logins=1, sessions=2, minutes_active=10.0, purchases=1, purchase_amount=5.0)
    ],
    "2025-01-08": [event("A", "2025-01-08", payment_failures=1)],  # an event, but no login: not an active day
    "2025-01-09": [event("X", "2025-01-09", logins=1, sessions=1, minutes_active=3.0)],
    "2025-01-10": [
        event("A", "2025-01-10", logins=3, sessions=4, minutes_active=30.5, support_tickets=1),
        event("C", "2025-01-10", logins=2, sessions=2, minutes_active=5.0),
        event("E", "2025-01-10", logins=1, sessions=1, minutes_active=1.0),
    ],
}
CANCELLATIONS = {"2025-01-10": [cancellation("X", "2025-01-10 15:00:00")]}

# After the end of D, with values that would show in any feature of D that read them.
FUTURE_CUSTOMERS = {
    "2025-01-11": [
        record("A", "2024-06-01", "2025-01-11 00:00:00", plan="premium", price=99.0),  # exactly at the end of D
        record("F", "2025-01-11", "2025-01-11 10:00:00"),
    ],
}
FUTURE_ACTIVITY = {
    "2024-12-11": [event("A", "2024-12-11", logins=10000)],  # D - 30: in the 90-day window only
    "2024-12-12": [event("A", "2024-12-12", logins=1000)],  # D - 29: in the 30-day window
    "2025-01-11": [
        event(
            "A", "2025-01-11", logins=1000, sessions=1000, minutes_active=1000.0, purchases=50, purchase_amount=900.0
        ),
        event("B", "2025-01-11", logins=7, sessions=7, minutes_active=70.0),
    ],
    "2025-01-12": [event("C", "2025-01-12", logins=9, sessions=9, minutes_active=90.0, support_tickets=5)],
}
FUTURE_CANCELLATIONS = {"2025-01-12": [cancellation("E", "2025-01-12 11:00:00")]}


def write_history(settings: Settings, first: str, last: str, *tables: dict[str, dict[str, list[dict]]]) -> None:
    customers, activity, cancellations = tables
    for date in days(first, last):
        key = date.isoformat()
        write_raw(settings.lake_root, "customers", date, customers.get(key, []))
        write_raw(settings.lake_root, "activity_events", date, activity.get(key, []))
        write_raw(settings.lake_root, "cancellations", date, cancellations.get(key, []))


SNAPSHOT_SQL = "select * from marts.customer_features where snapshot_date = $day order by customer_id"
# Labels mature within the tiny history; history starts on its first day (the first daily partition).
ENV = {"PLATFORM_THRESHOLDS__CHURN_HORIZON_DAYS": "3", "PLATFORM_HISTORY_START": "2024-12-01"}


@dataclass(frozen=True)
class History:
    settings: Settings  # of the module's own data root
    before: list[dict]  # the snapshot of D as first built, before the days after D existed
    after: list[dict]  # the snapshot of D built again once they had arrived


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """The hand-built history under the module's own data root, built in two steps (read-only for the tests)."""
    settings = Settings(data_root=tmp_path_factory.mktemp("hand_built") / "data")
    write_history(settings, "2024-12-01", "2025-01-10", CUSTOMERS, ACTIVITY, CANCELLATIONS)
    build = '{"snapshot_date_from": "2024-12-01", "snapshot_date_to": "2025-01-10"}'
    run_dbt(settings, "build", "--vars", build, env=ENV)
    before = query_dicts(settings, SNAPSHOT_SQL, {"day": D})
    # The days after D arrive; D is built again with them in the lake, then the days after it.
    write_history(settings, "2025-01-11", "2025-01-12", FUTURE_CUSTOMERS, FUTURE_ACTIVITY, FUTURE_CANCELLATIONS)
    build = '{"snapshot_date_from": "2025-01-10", "snapshot_date_to": "2025-01-12"}'
    run_dbt(settings, "build", "--vars", build, env=ENV)
    return History(settings, before, query_dicts(settings, SNAPSHOT_SQL, {"day": D}))


def test_no_feature_of_a_day_reads_anything_after_its_end(history: History) -> None:
    assert history.before, "the snapshot of D was not built"
    assert history.after == history.before


def test_feature_values_equal_hand_computed_ones(history: History) -> None:
    rows = {row["customer_id"]: row for row in history.after}
    # X cancelled on D, F signs up after D: neither is a customer at the end of D.
    assert sorted(rows) == ["A", "B", "C", "E"]

    a = rows["A"]
    # The record in force at the end of D is the one updated a microsecond before it, not the one at midnight.
    assert (a["plan"], a["monthly_price"]) == ("standard", 12.49)
    assert a["tenure_days"] == (D - day("2024-06-01")).days == 223
    # History starts on 2024-12-01: 41 days observable in the 90-day window.
    assert (a["observed_days_7d"], a["observed_days_30d"], a["observed_days_90d"]) == (7, 30, 41)
    # 7 days = 01-04 .. 01-10: the 100 logins of 01-03 (D - 7) fall outside; 30 days = 12-12 .. 01-10: the 10,000
    # of 12-11 (D - 30) fall outside, the 1,000 of 12-12 (D - 29) inside.
    assert (a["active_days_7d"], a["active_days_30d"], a["active_days_90d"]) == (2, 4, 5)  # 01-08: no login
    assert (a["logins_7d"], a["logins_30d"], a["logins_90d"]) == (4, 1104, 11104)
    assert (a["sessions_7d"], a["sessions_30d"], a["sessions_90d"]) == (6, 106, 106)
    assert (a["minutes_active_7d"], a["minutes_active_30d"]) == pytest.approx((40.5, 90.5))
    assert (a["purchases_7d"], a["spend_7d"]) == (1, pytest.approx(5.0))
    assert (a["support_tickets_7d"], a["payment_failures_7d"], a["payment_failures_30d"]) == (1, 1, 1)
    assert a["logins_per_day_7d"] == pytest.approx(4 / 7)
    assert a["logins_per_day_30d"] == pytest.approx(1104 / 30)
    assert a["logins_per_day_90d"] == pytest.approx(11104 / 41)
    assert a["spend_per_day_90d"] == pytest.approx(5.0 / 41)
    assert a["days_since_last_login"] == 0
    assert a["days_since_last_purchase"] == 6  # 01-04
    assert a["logins_trend_7d_30d"] == pytest.approx((4 / 7) / (1104 / 30))
    assert a["active_days_trend_7d_30d"] == pytest.approx((2 / 7) / (4 / 30))

    b = rows["B"]  # signed up on 12-20 and never did anything
    assert (b["observed_days_7d"], b["observed_days_30d"], b["observed_days_90d"], b["tenure_days"]) == (7, 22, 22, 21)
    assert all(b[f"{m}_90d"] == 0 for m in ("logins", "sessions", "purchases", "support_tickets", "active_days"))
    assert b["minutes_active_per_day_30d"] == 0
    # No login within the window: recency is censored at the days observed; a flat trend.
    assert (b["days_since_last_login"], b["days_since_last_purchase"]) == (22, 22)
    assert b["logins_trend_7d_30d"] == b["active_days_trend_7d_30d"] == 1.0

    c = rows["C"]  # signed up on D: one observed day, whatever the window
    assert (c["tenure_days"], c["observed_days_7d"], c["observed_days_90d"]) == (0, 1, 1)
    assert (c["logins_7d"], c["logins_per_day_7d"], c["logins_per_day_90d"]) == (2, 2.0, 2.0)
    assert (c["days_since_last_login"], c["days_since_last_purchase"]) == (0, 1)
    assert c["logins_trend_7d_30d"] == pytest.approx(1.0)

    # The day before D, X was still a customer, with its login of that day.
    day_before = {
        r["customer_id"]: r for r in query_dicts(history.settings, SNAPSHOT_SQL, {"day": D - dt.timedelta(1)})
    }
    assert sorted(day_before) == ["A", "B", "E", "X"]
    assert (day_before["X"]["logins_7d"], day_before["A"]["plan"]) == (1, "basic")


def test_labels_are_present_only_once_matured(history: History) -> None:
    settings = history.settings
    labels = query_dicts(
        settings,
        "select customer_id, snapshot_date, churned, cancel_date, matured_on, prediction_time, horizon_days "
        "from marts.churn_labels order by snapshot_date, customer_id",
    )
    # Horizon 3, history through 01-12: the labels of snapshots up to 01-09 have matured, later ones not yet.
    assert max(row["snapshot_date"] for row in labels) == day("2025-01-09")
    by_key = {(row["customer_id"], row["snapshot_date"].isoformat()): row for row in labels}
    on_09 = {c: r for (c, s), r in by_key.items() if s == "2025-01-09"}
    assert sorted(on_09) == ["A", "B", "E", "X"]
    # X cancelled on 01-10 and E on 01-12 (= 01-09 + 3): both inside the horizon of 01-09.
    assert {c: r["churned"] for c, r in on_09.items()} == {"A": False, "B": False, "E": True, "X": True}
    assert on_09["E"]["cancel_date"] == day("2025-01-12")
    assert on_09["X"]["prediction_time"] == dt.datetime(2025, 1, 10)  # the end of the snapshot day
    assert on_09["X"]["matured_on"] == day("2025-01-12")
    # From 01-08, E's cancellation on 01-12 is one day beyond the horizon.
    assert by_key[("E", "2025-01-08")]["churned"] is False
    assert by_key[("X", "2025-01-08")]["churned"] is True
    assert {row["horizon_days"] for row in labels} == {3}
    # One label per feature row of every matured snapshot day, none for the days before history began.
    assert query(
        settings,
        "select count(*) from marts.customer_features where snapshot_date <= date '2025-01-09'",
    ) == query(settings, "select count(*) from marts.churn_labels")


def test_building_a_day_twice_changes_no_row_count(history: History, tmp_path: Path) -> None:
    settings = Settings(data_root=tmp_path / "data")
    copy_data_root(history.settings.data_root, settings.data_root)
    counts_sql = (
        "select (select count(*) from intermediate.int_customer_activity_daily),"
        " (select count(*) from marts.customer_features), (select count(*) from marts.churn_labels)"
    )
    before = query(settings, counts_sql)
    run_dbt(settings, "build", "--vars", '{"snapshot_date": "2025-01-12"}', env=ENV)
    assert query(settings, counts_sql) == before
    assert query(settings, SNAPSHOT_SQL.replace("*", "count(*)").replace(" order by customer_id", ""), {"day": D}) == [
        (4,)
    ]


def test_a_day_beyond_the_raw_layer_is_refused(history: History) -> None:
    # 01-14 lacks its partitions (and 01-13's): building it would silently miss days of sign-ups and activity.
    args = ("run", "--select", "int_customer_activity_daily", "--vars", '{"snapshot_date": "2025-01-14"}')
    result = run_dbt(history.settings, *args, env=ENV, check=False)
    assert result.returncode != 0
    assert "Materialize the missing raw partitions first. Days: 2025-01-13" not in result.stdout
    assert "Materialize the missing raw partitions first. Days: 2025-01-14" in result.stdout
