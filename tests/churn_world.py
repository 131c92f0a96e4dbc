"""A small synthetic churn world in the lake's contracts, for the scoring, monitoring and automation tests.

It writes what the layers upstream of scoring produce, in their exact formats:

* the offline store's feature snapshots, a Delta table partitioned by ``snapshot_date`` (or the feature layer's
  daily export, which the real snapshot job turns into them);
* the feature layer's matured labels, ``<lake>/features/churn_labels/date=M/part-0.parquet`` holding the labels of
  snapshot M - N (the export files a label under the day it matured);
* a training set in the offline store's Delta contract (for tests that do not build it with Spark).

``CONTRACT`` declares the world's problem as a team's dbt project would: the example's names for the entity, the
day, the label and the two models, and the world's own eleven features.

Churn follows a logistic model of the features, so a model learns it (validation ROC AUC around 0.8). From
``drift_start`` on, a covariate shift moves prices, engagement, support tickets and the acquisition channel
while the relation between features and churn stays the same.
"""

import datetime as dt
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import CommitProperties, write_deltalake

from dagster_project.lake import partition_path, write_partition_atomically
from spark_jobs.contract import CATEGORICAL as CATEGORICAL_KIND
from spark_jobs.contract import NUMERIC as NUMERIC_KIND
from spark_jobs.contract import Contract, Feature

START = dt.date(2025, 1, 1)
PLANS = np.array(["basic", "standard", "premium"])
PRICES = np.array([9.99, 15.99, 22.99])
CONTRACTS = np.array(["monthly", "annual"])
REGIONS = np.array(["north", "south", "east", "west"])
CHANNELS = np.array(["organic", "paid_search", "referral", "partner", "influencer"])
PAYMENTS = np.array(["card", "paypal", "direct_debit"])
NUMERIC = [
    "tenure_days",
    "logins_30d",
    "minutes_active_30d",
    "support_tickets_30d",
    "payment_failures_30d",
    "monthly_price",
]
CATEGORICAL = ["plan", "contract", "region", "acquisition_channel", "payment_method"]
FEATURES = NUMERIC + CATEGORICAL
# The world's problem, declared as a team would: the example's entity, day, label and model names (its files sit
# where the example's exports do), and the world's own features.
CONTRACT = Contract(
    entity=("customer_id",),
    features_model="customer_features",
    as_of="snapshot_date",
    features=tuple(
        [Feature(name, NUMERIC_KIND) for name in NUMERIC] + [Feature(name, CATEGORICAL_KIND) for name in CATEGORICAL]
    ),
    feature_set_version="1",
    labels_model="churn_labels",
    label_as_of="snapshot_date",
    prediction_time="prediction_time",
    label="churned",
    horizon_days=30,
    top_risk_columns=("monthly_price", "tenure_days", *CATEGORICAL),
    risk_bands=(0.1, 0.3),
    source="tests/churn_world.py",
)
# Training parameters for tests: small and quick, the same code paths as production.
FAST_TRAINING = {"max_iter": 50, "importance_sample_rows": 300, "importance_repeats": 2, "reference_sample_rows": 1000}


def days(first: dt.date, count: int) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(count)]


@dataclass(frozen=True)
class ChurnWorld:
    customers: int = 1000
    seed: int = 0
    drift_start: dt.date | None = None
    horizon: int = 30

    def _static(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, 0])
        n = self.customers
        plan = rng.choice(3, n, p=[0.5, 0.35, 0.15])
        return {
            "customer_id": np.array([f"c{i:06d}" for i in range(n)], dtype=object),
            "plan": plan,
            "contract": rng.choice(2, n, p=[0.7, 0.3]),
            "region": rng.choice(4, n),
            "channel": rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1]),
            "payment": rng.choice(3, n, p=[0.6, 0.25, 0.15]),
            "engagement": rng.gamma(3.0, 1.0 / 3.0, n),
            "tenure": rng.integers(30, 1500, n),
        }

    @property
    def contract(self) -> Contract:
        """``CONTRACT`` with this world's label horizon."""
        return replace(CONTRACT, horizon_days=self.horizon)

    def drifted(self, day: dt.date) -> bool:
        return self.drift_start is not None and day >= self.drift_start

    def features(self, day: dt.date) -> pd.DataFrame:
        """The offline store's snapshot of ``day``: one row per customer."""
        s = self._static()
        rng = np.random.default_rng([self.seed, 1, day.toordinal()])
        n = self.customers
        engagement = s["engagement"].copy()
        channel = s["channel"].copy()
        price = PRICES[s["plan"]] * np.where(s["contract"] == 1, 0.85, 1.0)
        tickets_rate = 0.4 + 0.6 * (engagement < 0.6)
        if self.drifted(day):
            # Covariate shift: prices rise 25%, an influencer channel brings in less engaged customers who file
            # more tickets. How churn depends on the features does not change.
            price = price * 1.25
            moved = np.random.default_rng([self.seed, 2]).random(n) < 0.45
            channel[moved] = 4
            engagement = np.where(moved, engagement * 0.45, engagement)
            tickets_rate = tickets_rate * 1.8
        logins = rng.poisson(engagement * 12)
        return pd.DataFrame(
            {
                "customer_id": s["customer_id"],
                "snapshot_date": day,
                "tenure_days": (s["tenure"] + rng.integers(0, 3, n)).astype("int64"),
                "logins_30d": logins.astype("int64"),
                "minutes_active_30d": np.round(rng.gamma(2.0, engagement * 20 + 1), 2),
                "support_tickets_30d": rng.poisson(tickets_rate).astype("int64"),
                "payment_failures_30d": rng.poisson(0.2, n).astype("int64"),
                "monthly_price": np.round(price, 2),
                "plan": PLANS[s["plan"]],
                "contract": CONTRACTS[s["contract"]],
                "region": REGIONS[s["region"]],
                "acquisition_channel": CHANNELS[channel],
                "payment_method": PAYMENTS[s["payment"]],
            }
        )

    def labels(self, snapshot: dt.date, features: pd.DataFrame | None = None) -> pd.DataFrame:
        """Whether each customer of the snapshot of ``snapshot`` churned within the horizon."""
        f = self.features(snapshot) if features is None else features
        rng = np.random.default_rng([self.seed, 3, snapshot.toordinal()])
        logit = (
            -1.6
            - 0.12 * f["logins_30d"].to_numpy()
            + 0.8 * f["support_tickets_30d"].to_numpy()
            + 1.1 * f["payment_failures_30d"].to_numpy()
            - 1.1 * (f["contract"].to_numpy() == "annual")
            + 0.05 * (f["monthly_price"].to_numpy() - 15)
            + rng.normal(0, 0.4, len(f))
        )
        churned = (rng.random(len(f)) < 1 / (1 + np.exp(-logit))).astype("int64")
        return pd.DataFrame(
            {
                "customer_id": f["customer_id"].to_numpy(),
                "snapshot_date": snapshot,
                "prediction_time": pd.Timestamp(snapshot + dt.timedelta(days=1)),
                "churned": churned,
            }
        )

    # --- writers, in the contracts of the layers upstream of scoring ---

    def write_feature_snapshots(self, lake_root: Path, snapshot_days: list[dt.date]) -> int:
        """Replace those days in the Delta offline store (one commit); returns the table version."""
        frame = pd.concat([self.features(d) for d in snapshot_days], ignore_index=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.set_column(
            table.schema.get_field_index("snapshot_date"), "snapshot_date", table["snapshot_date"].cast(pa.date32())
        )
        path = Path(lake_root) / "offline_store" / "feature_snapshots"
        listed = ", ".join(f"'{d.isoformat()}'" for d in snapshot_days)
        exists = (path / "_delta_log").exists()
        write_deltalake(
            str(path),
            table,
            mode="overwrite",
            predicate=f"snapshot_date in ({listed})" if exists else None,
            partition_by=["snapshot_date"],
        )
        from deltalake import DeltaTable

        return DeltaTable(str(path)).version()

    def write_feature_exports(self, lake_root: Path, snapshot_days: list[dt.date]) -> None:
        """The feature layer's export of each day, ``<lake>/features/customer_features/date=D/part-0.parquet``: what
        the offline store's snapshot job reads."""
        for day in snapshot_days:
            table = pa.Table.from_pandas(self.features(day), preserve_index=False)
            index = table.schema.get_field_index("snapshot_date")
            table = table.set_column(index, "snapshot_date", table["snapshot_date"].cast(pa.date32()))
            write_partition_atomically(table, partition_path(Path(lake_root), "features", CONTRACT.features_model, day))

    def write_labels(self, lake_root: Path, matured_days: list[dt.date]) -> None:
        """The labels export of each day M: the labels of snapshot M - horizon, which matured on M."""
        for matured in matured_days:
            snapshot = matured - dt.timedelta(days=self.horizon)
            frame = self.labels(snapshot)
            table = pa.table(
                {
                    "customer_id": pa.array(frame["customer_id"], pa.string()),
                    "snapshot_date": pa.array(frame["snapshot_date"], pa.date32()),
                    "prediction_time": pa.array(frame["prediction_time"], pa.timestamp("us")),
                    "churned": pa.array(frame["churned"], pa.int64()),
                }
            )
            write_partition_atomically(
                table, partition_path(Path(lake_root), "features", CONTRACT.labels_model, matured)
            )

    def training_frame(self, snapshot_days: list[dt.date]) -> pd.DataFrame:
        frames = []
        for day in snapshot_days:
            f = self.features(day)
            labels = self.labels(day, f)
            frames.append(
                f.drop(columns=["snapshot_date"]).assign(
                    prediction_time=labels["prediction_time"],
                    label_snapshot_date=day + dt.timedelta(days=self.horizon),
                    churned=labels["churned"],
                    feature_snapshot_date=day,
                )
            )
        return pd.concat(frames, ignore_index=True)

    def write_training_set(
        self, lake_root: Path, snapshot_days: list[dt.date], declared: Contract | None = None
    ) -> int:
        """A new version of ``<lake>/offline_store/training_set`` in the Spark job's contract; returns it.

        ``declared``: a problem's contract to train under (the definitions' own): the features it declares that the
        world does not simulate are written as constants (0, or "none"), so a model trains on every declared
        feature and learns nothing from those."""
        frame = self.training_frame(snapshot_days)
        for feature in declared.features if declared else ():
            if feature.name not in frame.columns:
                frame[feature.name] = "none" if feature.kind == CATEGORICAL_KIND else 0.0
        table = pa.Table.from_pandas(frame, preserve_index=False)
        for name, dtype in (
            ("prediction_time", pa.timestamp("us")),
            ("label_snapshot_date", pa.date32()),
            ("feature_snapshot_date", pa.date32()),
        ):
            table = table.set_column(table.schema.get_field_index(name), name, table[name].cast(dtype))
        path = Path(lake_root) / "offline_store" / "training_set"
        metadata = {"feature_store_version": 0, "dagster_run_id": "churn-world", "churn_horizon_days": self.horizon}
        write_deltalake(
            str(path),
            table,
            mode="overwrite",
            commit_properties=CommitProperties(custom_metadata={"userMetadata": json.dumps(metadata)}),
        )
        from deltalake import DeltaTable

        return DeltaTable(str(path)).version()


def register_champion(
    root: Path, template_db: Path, world: ChurnWorld, snapshot_days: list[dt.date], artifact_root: str | None = None
) -> "object":
    """Train a model on ``world`` (a training set under ``root``'s lake), register it and promote it to champion
    through the ML domain's own code; returns the ``MlflowResource`` of the store under ``root`` (its artifacts
    under ``artifact_root`` if given, a folder or an object-store prefix)."""
    import shutil

    from dagster_project.defs.ml import registry, tracking
    from dagster_project.defs.ml.training import TrainingParams, train_from_training_set
    from dagster_project.resources import MlflowResource

    store = MlflowResource(
        tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
        artifact_root=artifact_root or str(root / "mlflow" / "artifacts"),
        experiment_name="churn_model",
        model_name="churn_model",
    )
    (root / "mlflow").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template_db, root / "mlflow" / "mlflow.db")
    lake_root = root / "lake"
    version = world.write_training_set(lake_root, snapshot_days)
    result = train_from_training_set(
        str(lake_root / "offline_store" / "training_set"), world.contract, version, TrainingParams(**FAST_TRAINING)
    )
    tracking.log_and_register(result, store, dagster_run_id="churn-world")
    decision = registry.run_promotion_gate(store, world.contract, auc_floor=0.6, tolerance=0.01)
    assert decision.promoted, decision.reason
    return store
