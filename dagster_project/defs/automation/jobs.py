"""Jobs: what the nightly run materializes for one day, and what a retraining runs."""

import dagster as dg

from dagster_project import asset_keys

# The groups a night runs through, in the order the data flows; later layers join this list.
NIGHTLY_GROUPS = [
    asset_keys.INGESTION_GROUP,
    asset_keys.FEATURES_GROUP,
    asset_keys.OFFLINE_STORE_GROUP,
    asset_keys.SCORING_GROUP,
    asset_keys.SERVING_GROUP,
    asset_keys.MONITORING_GROUP,
]
# Retraining: a fresh point-in-time training set, a challenger trained on it, and the promotion gate.
RETRAIN_KEYS = [asset_keys.TRAINING_SET, asset_keys.CHURN_MODEL, asset_keys.CHAMPION_MODEL]
RETRAIN_JOB = "retrain"

nightly_pipeline = dg.define_asset_job(
    name="nightly_pipeline",
    # The training set shares the offline store's group but is not nightly work: retraining builds it.
    selection=dg.AssetSelection.groups(*NIGHTLY_GROUPS) - dg.AssetSelection.assets(*RETRAIN_KEYS),
    description=(
        "Everything one day of data flows through: raw tables, dbt features and labels, the offline store's "
        "snapshot and its publication to the online store, batch scores with the champion, the drift report and "
        "the realized performance of matured scores. Run for partition D on the night after D (the "
        "`nightly_pipeline_schedule`)."
    ),
)

retrain = dg.define_asset_job(
    name=RETRAIN_JOB,
    # The two model assets and what they are trained from, one step upstream: the offline store's training set.
    selection=dg.AssetSelection.assets(asset_keys.CHURN_MODEL, asset_keys.CHAMPION_MODEL).upstream(depth=1),
    description=(
        "Retrain the churn model: build the point-in-time training set from the offline store, train and register "
        "a challenger in MLflow, and run the promotion gate, which decides whether it becomes the champion. "
        "Requested by the `retrain_on_drift` sensor when a drift or performance check fails."
    ),
    tags={"kind": "retrain"},
)
