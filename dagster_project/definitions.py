"""The code location: every domain's definitions, merged, with the resources built from settings."""

import dagster as dg

from dagster_project.defs import automation, ingestion
from dagster_project.resources import build_resources

defs = dg.Definitions.merge(
    ingestion.defs,
    automation.defs,
    dg.Definitions(resources=build_resources()),
)
