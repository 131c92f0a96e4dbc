"""The nightly schedule: at 02:00 UTC, the day that just ended runs through the whole graph."""

import dagster as dg

from dagster_project.defs.automation.jobs import nightly_pipeline

NIGHTLY_SCHEDULE = "nightly_pipeline_schedule"

# The partitions (and so the tick times) are in UTC. A schedule built from the partitioned job targets the last
# *complete* partition at tick time: the tick of 2025-04-02 02:00 runs partition 2025-04-01, whose raw files are
# whole by then.
nightly_schedule = dg.build_schedule_from_partitioned_job(
    nightly_pipeline,
    name=NIGHTLY_SCHEDULE,
    hour_of_day=2,
    minute_of_hour=0,
    description=(
        "Every night at 02:00 UTC: run `nightly_pipeline` for yesterday's partition (raw, features, offline "
        "store snapshot, scores, drift report, performance). Stopped by default: turn it on in the UI."
    ),
)
