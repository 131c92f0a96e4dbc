"""Every asset key of the code location that Python code refers to, in the order the data flows.

The one place a key is spelled: the asset that produces it and every asset, job, schedule, sensor and test that
refers to it import it from here, so renaming an asset is one edit here (and the graph snapshot test,
``tests/test_asset_graph.py``, shows the change). dbt models are the exception by design: their keys come from the
one translator (``defs/features/translator.py``) and are looked up with ``get_asset_key_for_model``.

Check names live beside the asset they check (``defs/<domain>/assets.py``), as Dagster's own projects do.
"""

import dagster as dg

# Groups, which are also the first component of the keys below: one per domain, in data-flow order.
INGESTION_GROUP = "ingestion"
FEATURES_GROUP = "features"
OFFLINE_STORE_GROUP = "offline_store"
ML_GROUP = "ml"
SCORING_GROUP = "scoring"
SERVING_GROUP = "serving"
MONITORING_GROUP = "monitoring"

# ingestion: one asset per raw table, raw/<table>.
RAW_PREFIX = "raw"


def raw_table(table: str) -> dg.AssetKey:
    """The raw asset of ``table``: ``raw/<table>``."""
    return dg.AssetKey([RAW_PREFIX, table])


# features: the dbt models (translator), then their exports to the lake, lake/<model>.
EXPORT_PREFIX = "lake"


def lake_export(model: str) -> dg.AssetKey:
    """The export of dbt model ``model`` to the lake: ``lake/<model>``."""
    return dg.AssetKey([EXPORT_PREFIX, model])


# The platform reads two of them downstream of dbt, whatever the problem names them: the contract's feature and
# label models (``lake_export(contract.features_model)``, ``lake_export(contract.labels_model)``).

# offline_store
FEATURE_SNAPSHOTS = dg.AssetKey([OFFLINE_STORE_GROUP, "feature_snapshots"])
TRAINING_SET = dg.AssetKey([OFFLINE_STORE_GROUP, "training_set"])
TABLE_MAINTENANCE = dg.AssetKey([OFFLINE_STORE_GROUP, "table_maintenance"])

# ml
CHURN_MODEL = dg.AssetKey([ML_GROUP, "churn_model"])
CHAMPION_MODEL = dg.AssetKey([ML_GROUP, "champion_model"])

# scoring
BATCH_SCORES = dg.AssetKey([SCORING_GROUP, "batch_scores"])

# serving: the online store the prediction service reads (dagster_project/service)
ONLINE_STORE = dg.AssetKey([SERVING_GROUP, "online_store"])

# monitoring
DRIFT_REPORT = dg.AssetKey([MONITORING_GROUP, "drift_report"])
MODEL_PERFORMANCE = dg.AssetKey([MONITORING_GROUP, "model_performance"])
ONLINE_PREDICTIONS = dg.AssetKey([MONITORING_GROUP, "online_predictions"])
