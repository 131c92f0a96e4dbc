"""Monitoring: Evidently drift reports, realized performance on matured labels, and the checks that guard them."""

import dagster as dg

from dagster_project.defs.monitoring.assets import drift_report, model_performance

defs = dg.Definitions(assets=[drift_report, model_performance])
