"""Jobs over the daily partitions: what the nightly run materializes for one day."""

import dagster as dg

from dagster_project.partitions import daily_partitions

# The groups a night runs through, in the order the data flows; later layers join this list.
NIGHTLY_GROUPS = ["ingestion"]

nightly_pipeline = dg.define_asset_job(
    name="nightly_pipeline",
    selection=dg.AssetSelection.groups(*NIGHTLY_GROUPS),
    partitions_def=daily_partitions,
    description="Everything one day of data flows through: raw tables first, then each layer downstream.",
)
