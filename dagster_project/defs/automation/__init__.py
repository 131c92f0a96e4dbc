"""Jobs, schedules and sensors: what runs when."""

import dagster as dg

from dagster_project.defs.automation.jobs import nightly_pipeline

defs = dg.Definitions(jobs=[nightly_pipeline])
