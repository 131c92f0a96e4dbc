"""The code location: every domain's definitions, merged, with the resources built from the settings.

Loaded lazily (``@dg.definitions``): the settings are read when Dagster loads the code location, once, and never
when a module is imported. ``build_definitions`` is the same thing for an explicit ``Settings`` (tests, the story).
"""

import warnings

import dagster as dg

from dagster_project.defs import build_domain_defs
from dagster_project.resources import build_resources
from dagster_project.settings import Settings, get_settings

# The nightly job runs one day per run, which every asset supports. Backfills of the dbt and offline-store assets
# alone may take 31 days in one run; Dagster notes the difference each time the job resolves. It is by design.
warnings.filterwarnings(
    "ignore",
    message="Asset job nightly_pipeline materializes assets with varying BackfillPolicies",
    category=UserWarning,
)


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions.merge(build_domain_defs(settings), dg.Definitions(resources=build_resources(settings)))


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(get_settings())
