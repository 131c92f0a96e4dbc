"""The columns the offline store's tables promise their readers: the one list of them.

Kept apart from the jobs so that readers (training, scoring) import the contract without importing Spark.
"""

ENTITY = "customer_id"
SNAPSHOT_DATE = "snapshot_date"
LABEL = "churned"
PREDICTION_TIME = "prediction_time"

# A feature snapshot: one row per entity and day, then the feature columns.
SNAPSHOT_KEY_COLUMNS = (ENTITY, SNAPSHOT_DATE)
# A matured label, as the label export holds it.
LABEL_INPUT_COLUMNS = (ENTITY, SNAPSHOT_DATE, PREDICTION_TIME, LABEL)
# A training-set row: its keys, time and label, then the features of the snapshot it was joined to.
TRAINING_SET_KEY_COLUMNS = (ENTITY, PREDICTION_TIME, "label_snapshot_date", LABEL, "feature_snapshot_date")
