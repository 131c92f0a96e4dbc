"""Machine learning: training tracked in MLflow, the registry's champion/challenger aliases, the promotion gate
and rollback."""

import dagster as dg

from dagster_project.defs.ml.assets import champion_serves, churn_model, rollback_champion
from dagster_project.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    """The model assets are not partitioned: nothing here depends on the settings (the resources carry them)."""
    return dg.Definitions(assets=[churn_model], asset_checks=[champion_serves], jobs=[rollback_champion])
