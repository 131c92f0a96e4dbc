"""Jobs, schedules and sensors: what runs when."""

import dagster as dg

from dagster_project.defs.automation.jobs import nightly_pipeline, retrain
from dagster_project.defs.automation.schedules import nightly_schedule
from dagster_project.defs.automation.sensors import retrain_on_drift

defs = dg.Definitions(jobs=[nightly_pipeline, retrain], schedules=[nightly_schedule], sensors=[retrain_on_drift])
