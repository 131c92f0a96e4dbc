"""Fractional measures (minutes, spend) are summed exactly, so a feature does not depend on the order of the sum.

DuckDB splits an aggregation over its threads and adds the partial sums in whatever order the threads finish: a
sum of doubles then comes out a few bits different from one build to the next, and a model trained on it differs
too (the story's AUCs and gate decisions moved between two runs of the same seed). Summed as decimals the result is
exact, whatever the order: each window's sum is the exact sum of the day's values, rounded once to a double.
"""

import datetime as dt
from decimal import Decimal

from feature_support import SIMULATED_DAYS, SimulatedBase, query_dicts

FRACTIONAL_MEASURES = ("minutes_active", "spend")


def test_fractional_window_sums_are_exact(simulated_base: SimulatedBase) -> None:
    settings = simulated_base.settings
    day = SIMULATED_DAYS[-1]
    daily = query_dicts(
        settings,
        "select customer_id, minutes_active, spend from intermediate.int_customer_activity_daily "
        "where activity_date between $first and $day",
        {"first": day - dt.timedelta(days=6), "day": day},
    )
    exact: dict[str, dict[str, Decimal]] = {}
    days_summed: dict[str, int] = {}
    for row in daily:
        sums = exact.setdefault(row["customer_id"], dict.fromkeys(FRACTIONAL_MEASURES, Decimal(0)))
        days_summed[row["customer_id"]] = days_summed.get(row["customer_id"], 0) + 1
        for measure in FRACTIONAL_MEASURES:
            sums[measure] += Decimal(repr(row[measure]))  # the value as written, to its last decimal
    features = query_dicts(
        settings,
        "select customer_id, minutes_active_7d, spend_7d from marts.customer_features where snapshot_date = $day",
        {"day": day},
    )
    assert any(days_summed[r["customer_id"]] > 1 for r in features), "no customer with several days to sum"
    for row in features:
        for measure in FRACTIONAL_MEASURES:
            assert row[f"{measure}_7d"] == float(exact[row["customer_id"]][measure]), (row["customer_id"], measure)
