"""Every domain's definitions, in the order the data flows; each domain builds its own from the settings."""

import dagster as dg

from dagster_project.defs import automation, features, ingestion, ml, monitoring, offline_store, scoring, serving
from dagster_project.settings import Settings

# Data-flow order: a domain imports only from the ones before it.
DOMAINS = (ingestion, features, offline_store, ml, scoring, serving, monitoring, automation)


def build_domain_defs(settings: Settings) -> dg.Definitions:
    """The assets, checks, jobs, schedules and sensors of every domain (resources excluded)."""
    return dg.Definitions.merge(*(domain.build_defs(settings) for domain in DOMAINS))
