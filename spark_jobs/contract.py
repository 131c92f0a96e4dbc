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

# The lineage of the features: the checksum of the dbt model that produced them (the manifest's ``checksum`` of the
# model node). Written once, by the dbt export, into each file's Parquet metadata; carried under this same key by the
# snapshot commit of that file, the training-set commit and the model's tags. Null where a file lacks it (a
# hand-made export): unknown, never a guess.
DBT_MODEL_CHECKSUM = "dbt_model_checksum"
# On a training-set commit: the distinct checksums of the snapshot days it read, oldest day first (null: a day
# whose file carried none). The commit's DBT_MODEL_CHECKSUM is the newest day's.
DBT_MODEL_CHECKSUMS = "dbt_model_checksums"
