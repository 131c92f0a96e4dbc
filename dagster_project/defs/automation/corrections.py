"""``rebuild_after_corrections``: a raw day ingested again with other content makes the later feature days stale.

A feature day reads the raw days before it (its windows; the customers and cancellations seen so far), so when the
source corrects day D and D is re-ingested, the features of D and of every later day already built were computed
from the old rows. Dagster's own staleness cannot say so here: the dbt models read their earlier days through SQL,
not through partition mappings. So the raw asset fingerprints what it kept (metadata ``content_fingerprint``,
``corrected`` when it differs from the day's previous ingestion), and this sensor turns each correction into
ranged runs of ``rebuild_features`` (the dbt features, their exports, the offline store's snapshots) from D to the
last feature day built, in chunks of the features' backfill size. Each request's run key names the table, the day
and the new content, so one correction is rebuilt once.
"""

import datetime as dt
import json

import dagster as dg

from dagster_project import asset_keys
from dagster_project.defs.ingestion.assets import CORRECTED_METADATA, CORRECTIONS_SENSOR
from dagster_project.partitions import RANGE_END, RANGE_START, day_chunks

REBUILD_JOB = "rebuild_features"
TAG_CORRECTED = "correction/raw_day"

rebuild_features = dg.define_asset_job(
    name=REBUILD_JOB,
    selection=dg.AssetSelection.groups(asset_keys.FEATURES_GROUP)
    | dg.AssetSelection.assets(asset_keys.FEATURE_SNAPSHOTS),
    description=(
        "Rebuild a range of feature days and their offline-store snapshots: what a corrected raw day makes stale "
        "(requested by the `rebuild_after_corrections` sensor; run it by hand as a backfill of the range)."
    ),
)


def _corrected(materialization: dg.AssetMaterialization | None) -> bool:
    entry = None if materialization is None else materialization.metadata.get(CORRECTED_METADATA)
    return bool(entry is not None and entry.value)


def build_corrections_sensor(raw_keys: list[dg.AssetKey], features_key: dg.AssetKey) -> dg.SensorDefinition:
    """The sensor over the problem's raw tables; ``features_key``: the asset whose partitions are the built days."""

    @dg.sensor(
        name=CORRECTIONS_SENSOR,
        job=rebuild_features,
        minimum_interval_seconds=120,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            "When a raw day is ingested again with other content (metadata `corrected`), requests ranged runs of "
            "`rebuild_features` from that day to the last feature day built: those days read the old rows."
        ),
    )
    def rebuild_after_corrections(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        after = {k: int(v) for k, v in json.loads(context.cursor or "{}").items()}
        built = sorted(dt.date.fromisoformat(p) for p in context.instance.get_materialized_partitions(features_key))
        requests, seen, notes = [], dict(after), []
        for key in raw_keys:
            name = key.to_user_string()
            records = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=after.get(name)), limit=1000, ascending=True
            ).records
            for record in records:
                seen[name] = max(seen.get(name, 0), record.storage_id)
                materialization = record.asset_materialization
                if not _corrected(materialization):
                    continue
                day = dt.date.fromisoformat(str(record.partition_key))
                if not built or built[-1] < day:
                    notes.append(f"{name} {day} was corrected before any feature day read it")
                    continue
                fingerprint = str(materialization.metadata["content_fingerprint"].value)
                for first, last in day_chunks(day, built[-1]):
                    requests.append(
                        dg.RunRequest(
                            run_key=f"correction-{name}-{day}-{fingerprint[:12]}-{first}",
                            tags={
                                RANGE_START: first.isoformat(),
                                RANGE_END: last.isoformat(),
                                TAG_CORRECTED: f"{name}@{day}",
                            },
                        )
                    )
                notes.append(f"{name} {day} was corrected: rebuilding feature days {day}..{built[-1]}")
        cursor = json.dumps(seen, sort_keys=True)
        if not requests:
            reason = "; ".join(notes) or "No raw day was ingested again with other content since the last tick."
            return dg.SensorResult(skip_reason=reason, cursor=cursor)
        context.log.info("; ".join(notes))
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return rebuild_after_corrections
