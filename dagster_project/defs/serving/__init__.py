"""Serving: the online store the prediction service (``dagster_project/service``) reads, fed from the same feature
snapshots as training and batch scoring, and the checks that prove the two paths agree."""

import dagster as dg

from dagster_project.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions()
