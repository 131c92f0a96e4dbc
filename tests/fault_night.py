"""What tests/test_fault_injection.py kills: a night or a retrain of the small churn world, as the story runs them,
or a day of raw tables and dbt features.

Run in a process of its own (``python tests/fault_night.py night|retrain|features DAY``, the data root and the point
to kill at in the environment), or called in process for the uninterrupted reference. The night and the retrain use
the story's definitions from the offline store on (as in tests/test_story_reproducible.py); ``features`` is the raw
and features layers of the simulator's day. The runs go to the data root's own instance, tagged with their process,
so that a later process can tell a killed run from a live one.
"""

import datetime as dt
import sys

import dagster as dg
from churn_world import FAST_TRAINING, ChurnWorld

from dagster_project import replay
from dagster_project.defs import automation, features, ingestion, ml, monitoring, offline_store, scoring
from dagster_project.defs.automation.abandoned_runs import OWNER_TAG, fail_abandoned_runs, this_process
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


def raw_and_features(day: dt.date, last: dt.date | None = None) -> bool:
    """The raw tables and dbt features of ``day``; or of the days ``day``..``last``: the raw tables day by day, then
    the features in one ranged run, as a backfill runs them."""
    if last is not None:
        days = [day + dt.timedelta(days=i) for i in range((last - day).days + 1)]
        raw = [_materialize(dg.AssetSelection.key_prefixes("raw"), {}, str(d)) for d in days]
        ranged = {"dagster/asset_partition_range_start": str(day), "dagster/asset_partition_range_end": str(last)}
        return all(raw) and _materialize(dg.AssetSelection.all() - dg.AssetSelection.key_prefixes("raw"), ranged)
    return _materialize(dg.AssetSelection.all(), {}, str(day))


def _materialize(selection: dg.AssetSelection, tags: dict[str, str], partition: str | None = None) -> bool:
    settings = get_settings()
    assets = [*ingestion.build_defs(settings).assets, *features.build_defs(settings).assets]
    instance = local_instance(settings)
    fail_abandoned_runs(instance)  # as the watchdog sensor would have by then: a dead run's slots would block this one
    result = dg.materialize(
        [a for a in assets if isinstance(a, dg.AssetsDefinition)],
        selection=selection,
        partition_key=partition,
        tags={**tags, OWNER_TAG: this_process()},
        instance=instance,
        resources=build_resources(settings),
        raise_on_error=False,
    )
    return result.success


def run(part: str, day: dt.date) -> bool:
    """The night of ``day`` (snapshot, scores, drift, performance), a retrain (training set, model, gate), or the raw
    and features layers of ``day``."""
    if part == "features":
        return raw_and_features(day)
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
