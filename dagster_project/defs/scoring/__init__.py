"""Nightly batch scoring: the champion scores each day's feature snapshot into a Delta table of scores."""

import dagster as dg

from dagster_project.defs.scoring.assets import batch_scores

defs = dg.Definitions(assets=[batch_scores])
