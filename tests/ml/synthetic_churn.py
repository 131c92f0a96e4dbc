"""A synthetic, learnable training set in the offline store's contract, written as a real Delta table."""

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import CommitProperties, write_deltalake

from spark_jobs.contract import CATEGORICAL, NUMERIC, Contract, Feature

# Training parameters for tests: small and quick, yet the same code paths as production.
FAST = {"max_iter": 50, "importance_sample_rows": 300, "importance_repeats": 2, "reference_sample_rows": 500}

PLANS = ["basic", "standard", "premium"]
CONTRACTS = ["monthly", "annual"]
REGIONS = ["north", "south", "east", "west"]
CHANNELS = ["organic", "paid_search", "referral", "partner"]
PAYMENTS = ["card", "direct_debit", "invoice"]
# The features of ``synthetic_training_set``, by the kind the pipeline encodes them as.
NUMERIC_FEATURES = [
    "tenure_days",
    "logins_30d",
    "minutes_active_30d",
    "support_tickets_30d",
    "payment_failures_30d",
    "monthly_price",
]
CATEGORICAL_FEATURES = ["plan", "contract", "region", "acquisition_channel", "payment_method"]


def synthetic_contract(numeric: tuple[str, ...] = (), categorical: tuple[str, ...] = ()) -> Contract:
    """The contract of ``synthetic_training_set``'s columns, declaring the ``numeric`` and ``categorical`` columns a
    test adds as features too."""
    return Contract(
        entity=("customer_id",),
        features_model="synthetic_features",
        as_of="snapshot_date",
        features=tuple(
            [Feature(name, NUMERIC) for name in [*NUMERIC_FEATURES, *numeric]]
            + [Feature(name, CATEGORICAL) for name in [*CATEGORICAL_FEATURES, *categorical]]
        ),
        feature_set_version="1",
        labels_model="synthetic_labels",
        label_as_of="snapshot_date",
        prediction_time="prediction_time",
        label="churned",
        horizon_days=30,
        source="tests/ml/synthetic_churn.py",
    )


def synthetic_training_set(
    customers: int = 150, snapshots: int = 40, every_days: int = 3, seed: int = 0, start: dt.date = dt.date(2025, 1, 1)
) -> pd.DataFrame:
    """``customers`` x ``snapshots`` label rows, one snapshot every ``every_days`` days.

    Churn follows a logistic model of engagement, payment failures, support tickets, contract and price, with
    noise: a good model reaches a validation ROC AUC around 0.8, a model without signal 0.5.
    """
    rng = np.random.default_rng(seed)
    ids = np.array([f"c{i:05d}" for i in range(customers)])
    plan = rng.choice(PLANS, customers)
    contract = rng.choice(CONTRACTS, customers, p=[0.7, 0.3])
    region = rng.choice(REGIONS, customers)
    channel = rng.choice(CHANNELS, customers)
    payment = rng.choice(PAYMENTS, customers)
    price = np.select([plan == "basic", plan == "standard"], [9.0, 19.0], 39.0)
    engagement = rng.gamma(2.0, 1.0, customers)  # a customer's habitual level, so rows of one customer correlate
    frames = []
    for i in range(snapshots):
        snapshot = start + dt.timedelta(days=i * every_days)
        logins = rng.poisson(engagement * 8)
        minutes = np.round(rng.gamma(2.0, engagement * 15 + 1), 2)
        tickets = rng.poisson(0.3 + 0.4 * (engagement < 1), customers)
        failures = rng.poisson(0.15, customers)
        logit = (
            -1.2
            - 0.12 * logins
            + 0.9 * tickets
            + 1.2 * failures
            - 1.0 * (contract == "annual")
            + 0.02 * (price - 19)
            + 0.4 * (channel == "paid_search")
            + rng.normal(0, 0.5, customers)
        )
        churned = (rng.random(customers) < 1 / (1 + np.exp(-logit))).astype("int64")
        # Predictions are made at the start of the day after the snapshot, when the snapshot is complete.
        prediction_time = pd.Timestamp(snapshot + dt.timedelta(days=1)) + pd.Timedelta(hours=2)
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": ids,
                    "prediction_time": prediction_time,
                    "label_snapshot_date": snapshot + dt.timedelta(days=1),
                    "churned": churned,
                    "feature_snapshot_date": snapshot,
                    "tenure_days": (snapshot - start).days + rng.integers(30, 900, customers),
                    "logins_30d": logins,
                    "minutes_active_30d": minutes,
                    "support_tickets_30d": tickets,
                    "payment_failures_30d": failures,
                    "monthly_price": price,
                    "plan": plan,
                    "contract": contract,
                    "region": region,
                    "acquisition_channel": channel,
                    "payment_method": payment,
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    # Real feature tables have gaps: a few missing numbers and categories the model must cope with.
    frame.loc[rng.random(len(frame)) < 0.02, "minutes_active_30d"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.02, "region"] = None
    return frame


SCHEMA_OVERRIDES = {
    "prediction_time": pa.timestamp("us"),
    "label_snapshot_date": pa.date32(),
    "feature_snapshot_date": pa.date32(),
}


def write_training_set(
    path: Path,
    frame: pd.DataFrame,
    feature_store_version: int = 7,
    dagster_run_id: str = "test-run",
    churn_horizon_days: int = 30,
    **extra: object,
) -> int:
    """Write ``frame`` as a new version of the Delta table at ``path`` (microsecond timestamps, as Spark writes
    them), with the lineage in the commit's ``userMetadata`` like the Spark job does; return the version."""
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    for name, dtype in SCHEMA_OVERRIDES.items():
        arrow = arrow.set_column(arrow.schema.get_field_index(name), name, arrow[name].cast(dtype))
    metadata = {
        "feature_store_version": feature_store_version,
        "dagster_run_id": dagster_run_id,
        "churn_horizon_days": churn_horizon_days,
        **extra,
    }
    write_deltalake(
        str(path),
        arrow,
        mode="overwrite",
        commit_properties=CommitProperties(custom_metadata={"userMetadata": json.dumps(metadata)}),
    )
    from deltalake import DeltaTable

    return DeltaTable(str(path)).version()
