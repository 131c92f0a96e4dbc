"""The simulator: deterministic, realistic churn, and drift scenarios that really shift what they claim to."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from dagster_project.settings import Scenario, Simulation
from examples.subscription import simulator

START = dt.date(2025, 1, 1)
DRIFT = dt.date(2025, 3, 1)


def _days(first: dt.date, count: int) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(count)]


def _history(cfg: Simulation, days: int) -> dict[str, pd.DataFrame]:
    return {
        name: pd.concat([make(cfg, d) for d in _days(cfg.start_date, days)]) for name, make in simulator.TABLES.items()
    }


@pytest.fixture(scope="module")
def history() -> dict[str, pd.DataFrame]:
    return _history(Simulation(customers=3_000, start_date=START), 150)


def test_same_seed_and_date_give_identical_tables() -> None:
    cfg = Simulation(customers=500, start_date=START)
    day = dt.date(2025, 2, 10)
    first = {name: make(cfg, day) for name, make in simulator.TABLES.items()}
    simulator._population_cached.cache_clear()
    # Asking for a far later day first simulates a longer horizon; day D must not change.
    simulator.activity_events(cfg, dt.date(2025, 9, 1))
    again = {name: make(cfg, day) for name, make in simulator.TABLES.items()}
    for name in simulator.TABLES:
        pd.testing.assert_frame_equal(first[name], again[name])
    other_seed = simulator.activity_events(cfg.model_copy(update={"seed": 7}), day)
    assert not first["activity_events"]["minutes_active"].equals(other_seed["minutes_active"])


def test_first_day_carries_the_existing_base_and_ids_are_unique(history: dict[str, pd.DataFrame]) -> None:
    customers = history["customers"]
    first_day = customers[customers["updated_at"].dt.date == START]
    assert len(first_day) == 3_000
    assert customers["customer_id"].is_unique  # no scenario re-issues records here
    assert (customers["signup_date"] <= customers["updated_at"]).all()


def test_churn_rate_is_plausible(history: dict[str, pd.DataFrame]) -> None:
    cancels = history["cancellations"]
    # Sign-ups roughly replace leavers, so the initial base is the right denominator.
    monthly_rate = len(cancels) / (150 / 30) / 3_000
    assert 0.02 <= monthly_rate <= 0.08, monthly_rate
    # Nobody cancels twice and nobody is active after cancelling.
    assert cancels["customer_id"].is_unique
    events = history["activity_events"].merge(cancels[["customer_id", "cancel_date"]], on="customer_id")
    assert (events["event_date"] < events["cancel_date"]).all()


def _features_and_labels(history: dict[str, pd.DataFrame], snapshot: pd.Timestamp) -> tuple[pd.DataFrame, np.ndarray]:
    """A handful of plain aggregates: enough to see whether behaviour carries a churn signal."""
    customers = history["customers"].sort_values("updated_at").groupby("customer_id").last()
    cancels = history["cancellations"].set_index("customer_id")["cancel_date"]
    alive = customers[
        (customers["signup_date"] <= snapshot) & ~customers.index.isin(cancels[cancels <= snapshot].index)
    ]
    events = history["activity_events"]
    features = pd.DataFrame(index=alive.index)
    for window in (7, 30):
        recent = events[
            (events["event_date"] > snapshot - pd.Timedelta(days=window)) & (events["event_date"] <= snapshot)
        ]
        sums = recent.groupby("customer_id")[["logins", "minutes_active", "support_tickets", "payment_failures"]].sum()
        features = features.join(sums.add_suffix(f"_{window}d"))
    features = features.fillna(0)
    features["monthly_price"] = alive["monthly_price"]
    features["annual"] = (alive["contract"] == "annual").astype(int)
    features["tenure_days"] = (snapshot - alive["signup_date"]).dt.days
    horizon = cancels[(cancels > snapshot) & (cancels <= snapshot + pd.Timedelta(days=30))]
    return features, alive.index.isin(horizon.index).astype(int)


def test_behaviour_separates_churners_and_a_model_reaches_a_realistic_auc(history: dict[str, pd.DataFrame]) -> None:
    train = [_features_and_labels(history, pd.Timestamp(START) + pd.Timedelta(days=d)) for d in (40, 50, 60, 70)]
    x_train = pd.concat([f for f, _ in train])
    y_train = np.concatenate([y for _, y in train])
    x_test, y_test = _features_and_labels(history, pd.Timestamp(START) + pd.Timedelta(days=110))
    assert 0.02 < y_test.mean() < 0.1
    # Churners are visibly less active over the last week, and file more tickets.
    assert x_test["logins_7d"][y_test == 1].mean() < 0.7 * x_test["logins_7d"][y_test == 0].mean()
    assert x_test["support_tickets_30d"][y_test == 1].mean() > x_test["support_tickets_30d"][y_test == 0].mean()
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert 0.72 <= auc <= 0.95, auc


def test_price_rise_shifts_prices_and_brings_a_new_channel() -> None:
    cfg = Simulation(customers=1_000, start_date=START, scenario=Scenario.price_rise, drift_start=DRIFT)
    before = simulator.customers(cfg, DRIFT - dt.timedelta(days=1))
    on_drift = simulator.customers(cfg, DRIFT)
    after = pd.concat([simulator.customers(cfg, d) for d in _days(DRIFT + dt.timedelta(days=1), 30)])
    assert len(on_drift) > 800  # every active customer's record is re-issued with the new price
    assert on_drift["monthly_price"].mean() > 1.2 * before["monthly_price"].mean()
    assert "influencer" not in set(before["acquisition_channel"])
    assert (after["acquisition_channel"] == "influencer").mean() > 0.25
    baseline = Simulation(customers=1_000, start_date=START)
    assert len(after) > 1.5 * sum(
        len(simulator.customers(baseline, d)) for d in _days(DRIFT + dt.timedelta(days=1), 30)
    )


def test_concept_shift_makes_heavy_users_leave() -> None:
    def churner_engagement(scenario: Scenario) -> float:
        cfg = Simulation(customers=2_000, start_date=START, scenario=scenario, drift_start=DRIFT)
        pop = simulator.population(cfg, DRIFT + dt.timedelta(days=60))
        after = (pop.cancel_date >= np.datetime64(DRIFT)) & (pop.cancel_date < np.datetime64(DRIFT) + 60)
        return float(np.median(pop.engagement[after]) / np.median(pop.engagement))

    assert churner_engagement(Scenario.none) < 0.9  # normally, light users leave
    assert churner_engagement(Scenario.concept_shift) > 1.1  # after the shift, heavy users do


def test_reaches_a_hundred_thousand_customers_and_a_year() -> None:
    cfg = Simulation(customers=100_000, start_date=START)
    last_day = START + dt.timedelta(days=364)
    events = simulator.activity_events(cfg, last_day)
    customers = simulator.customers(cfg, last_day)
    assert 40_000 < len(events) < 150_000
    assert len(customers) > 50  # sign-ups keep arriving
    assert events["customer_id"].is_unique
