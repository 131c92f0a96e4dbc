"""``serving/online_store``: each night, the day's feature snapshot of every entity, published to the online store.

The online store holds one day, the latest: the prediction service reads an entity's features from it at request
time, the same values the offline store holds for that day (read from it, never recomputed), so what a model is
served online is what batch scoring scores offline.
"""

import datetime as dt

import dagster as dg
from pydantic import Field

from dagster_project import asset_keys
from dagster_project.defs.scoring import scores as scoring
from dagster_project.online_store import SnapshotInfo
from dagster_project.partitions import ranged_asset
from dagster_project.resources import ContractResource, LakeResource, OnlineStoreResource
from spark_jobs.contract import Contract


class OnlineStoreConfig(dg.Config):
    allow_older_day: bool = Field(
        False,
        description="Publish the day even if the store holds a later one (going back to an earlier day's features "
        "on purpose). Without it, a run for an older day leaves the store's newer day in place.",
    )


def is_older(day: dt.date, current: SnapshotInfo | None) -> bool:
    """Whether publishing ``day`` would move the store back from a later day."""
    return current is not None and day < current.day


def build_online_store(partitions: dg.PartitionsDefinition, declared: Contract, backend: str) -> dg.AssetsDefinition:
    """``serving/online_store`` over ``partitions``, publishing the features ``declared`` to the ``backend`` the
    settings name."""

    @ranged_asset(
        key=asset_keys.ONLINE_STORE,
        partitions_def=partitions,
        deps=[asset_keys.FEATURE_SNAPSHOTS],
        group_name=asset_keys.SERVING_GROUP,
        kinds={"deltalake", backend},
        metadata={
            "entity_columns": ", ".join(declared.entity),
            "features": len(declared.feature_names),
        },
    )
    def online_store(
        context: dg.AssetExecutionContext,
        config: OnlineStoreConfig,
        lake: LakeResource,
        contract: ContractResource,
        online_store: OnlineStoreResource,
    ) -> dg.MaterializeResult:
        """The day's features of every entity, from the Delta offline store, replacing the online store's snapshot
        atomically (readers see the old day or the new one, never a mix; entities absent from the day leave).

        The store holds the latest day only: a ranged run (a backfill) publishes its last day, and a day older than
        the one the store holds is not published unless `allow_older_day` is set. The Delta table version read is
        recorded with the snapshot, so a served feature can be traced to the offline row it came from."""
        names = contract.contract
        day = dt.date.fromisoformat(context.partition_keys[-1])
        if len(context.partition_keys) > 1:
            context.log.info(f"a ranged run of {len(context.partition_keys)} days: the store gets the last, {day}")
        store = online_store.open()
        try:
            current = store.current()
            if is_older(day, current) and not config.allow_older_day:
                assert current is not None
                reason = (
                    f"the online store holds {current.day}, later than {day}; it keeps its day (set allow_older_day "
                    "to publish an earlier day)"
                )
                context.log.warning(f"not published: {reason}")
                return dg.MaterializeResult(
                    metadata={
                        "published": False,
                        "not_published_because": reason,
                        "snapshot_day": current.day.isoformat(),
                        "skipped_day": day.isoformat(),
                        "delta_table_version": current.delta_version,
                        "backend": online_store.backend,
                    }
                )
            features = scoring.read_feature_snapshot(lake.root, day, names, columns=names.feature_names)
            version = features.attrs[scoring.SNAPSHOT_VERSION]
            result = store.publish(
                features,
                day=day,
                entity_columns=names.entity,
                feature_names=names.feature_names,
                delta_version=version,
            )
        finally:
            store.close()
        context.log.info(
            f"published {day}: {result.snapshot.entities} entities from Delta version {version} in "
            f"{result.seconds:.2f} s; {result.removed_entities} entities left"
        )
        return dg.MaterializeResult(
            metadata={
                "published": True,
                "dagster/row_count": result.snapshot.entities,
                "snapshot_day": day.isoformat(),
                "delta_table_version": version,
                "bytes": result.bytes_written,
                "seconds": round(result.seconds, 3),
                "removed_entities": result.removed_entities,
                "backend": online_store.backend,
                "generation": result.snapshot.generation,
            }
        )

    return online_store
