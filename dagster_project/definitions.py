"""The code location: every domain's definitions, merged, with the resources built from settings."""

import warnings

import dagster as dg

from dagster_project.defs import automation, features, ingestion, ml, monitoring, offline_store, scoring
from dagster_project.resources import build_resources

# The nightly job runs one day per run, which every asset supports. Backfills of the dbt and offline-store assets
# alone may take 31 days in one run; Dagster notes the difference each time the job resolves. It is by design.
warnings.filterwarnings(
    "ignore",
    message="Asset job nightly_pipeline materializes assets with varying BackfillPolicies",
    category=UserWarning,
)

defs = dg.Definitions.merge(
    ingestion.defs,
    features.defs,
    offline_store.defs,
    automation.defs,
    ml.defs,
    scoring.defs,
    monitoring.defs,
    dg.Definitions(resources=build_resources()),
)
