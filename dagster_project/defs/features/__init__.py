"""Features: the dbt feature tables as assets (dbt tests as asset checks) and their exports to the lake."""

import dagster as dg

from dagster_project.defs.features.assets import feature_tables
from dagster_project.defs.features.exports import export_assets

defs = dg.Definitions(assets=[feature_tables, *export_assets])
