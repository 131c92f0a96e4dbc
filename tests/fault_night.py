"""A night, or a retrain, of the small churn world, as the story runs it: what tests/test_fault_injection.py kills.

Run in a process of its own (``python tests/fault_night.py night|retrain DAY``, the data root and the point to
kill at in the environment), or called in process for the uninterrupted reference. The definitions are the story's
from the offline store on (as in tests/test_story_reproducible.py); the runs go to the data root's own instance,
tagged with their process, so that a later process can tell a killed run from a live one.
"""

import datetime as dt
import sys

import dagster as dg
from churn_world import FAST_TRAINING, ChurnWorld

from dagster_project import replay
from dagster_project.defs import automation, ml, monitoring, offline_store, scoring
from dagster_project.defs.automation.jobs import RETRAIN_JOB
from dagster_project.defs.automation.sensors import TAG_REASON
from dagster_project.instance import local_instance
from dagster_project.resources import ContractResource, build_resources
from dagster_project.settings import get_settings

CUSTOMERS = 300
HORIZON_DAYS = 7
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def world(drift_start: dt.date) -> ChurnWorld:
    return ChurnWorld(customers=CUSTOMERS, horizon=HORIZON_DAYS, drift_start=drift_start)


def definitions(contract: object) -> dg.Definitions:
    settings = get_settings()
    return dg.Definitions.merge(
        *(domain.build_defs(settings) for domain in (offline_store, ml, scoring, monitoring, automation)),
        dg.Definitions(resources={**build_resources(settings), "contract": ContractResource.of(contract)}),
    )


def run(part: str, day: dt.date) -> bool:
    """The night of ``day`` (snapshot, scores, drift, performance) or a retrain (training set, model, gate)."""
    defs = definitions(world(day).contract)
    instance = local_instance(get_settings())
    if part == "night":
        _, result = replay.run_nightly(defs, instance, day, run_config=QUIET)
    else:
        request = dg.RunRequest(tags={TAG_REASON: "bootstrap"})
        config = {**QUIET, "ops": {"churn_model": {"config": FAST_TRAINING}}}
        result = replay.execute_request(defs, instance, RETRAIN_JOB, request, {}, run_config=config)
    return result.success


if __name__ == "__main__":
    sys.exit(0 if run(sys.argv[1], dt.date.fromisoformat(sys.argv[2])) else 1)
