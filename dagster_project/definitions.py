"""The code location: every domain's definitions, merged, with the resources built from settings."""

import dagster as dg

from dagster_project.defs import automation, features, ingestion, ml, monitoring, offline_store, scoring
from dagster_project.resources import build_resources

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
