"""``serving/online_store``: real Dagster runs publish the churn world's Delta snapshots into a real SQLite file and a
real redis-server, and what the store serves is the offline store's day, value for value."""

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from churn_world import START, ChurnWorld
from deltalake import DeltaTable

from dagster_project import lake as lake_layout
from dagster_project.defs.serving.assets import build_online_store
from dagster_project.online_store import OnlineStore, entity_key
from dagster_project.partitions import RANGE_END, RANGE_START, daily_partitions
from dagster_project.resources import ContractResource, LakeResource, OnlineStoreResource
from dagster_project.settings import Settings

DAY = START + dt.timedelta(days=40)
NEXT = DAY + dt.timedelta(days=1)
LAST = DAY + dt.timedelta(days=2)
OP = "serving__online_store"


@pytest.fixture(params=["sqlite", "redis"])
def online(request: pytest.FixtureRequest, settings: Settings) -> OnlineStoreResource:
    resource = OnlineStoreResource.from_settings(settings)  # the SQLite file under the test's data root
    if request.param == "sqlite":
        return resource
    return OnlineStoreResource(
        backend="redis",
        sqlite_path=resource.sqlite_path,
        redis_url=request.getfixturevalue("redis_url"),
        redis_prefix="test",
    )


def _materialize(
    settings: Settings,
    online: OnlineStoreResource,
    days: tuple[dt.date, dt.date],
    world: ChurnWorld,
    **config: object,
) -> dg.ExecuteInProcessResult:
    first, last = days
    return dg.materialize(
        [build_online_store(daily_partitions(settings), world.contract, online.backend)],
        partition_key=first.isoformat() if first == last else None,
        tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()} if first != last else None,
        resources={
            "lake": LakeResource(root=str(settings.lake_root)),
            "contract": ContractResource.of(world.contract),
            "online_store": online,
        },
        run_config={"ops": {OP: {"config": config}}} if config else None,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _metadata(result: dg.ExecuteInProcessResult) -> list[dict[str, object]]:
    return [{k: v.value for k, v in m.metadata.items()} for m in result.asset_materializations_for_node(OP)]


def _delta_day(settings: Settings, day: dt.date) -> pd.DataFrame:
    path = lake_layout.offline_store(settings.lake_root).feature_snapshots
    return DeltaTable(str(path)).to_pandas(filters=[("snapshot_date", "=", day)])


def _assert_serves_exactly(store: OnlineStore, offline: pd.DataFrame, world: ChurnWorld) -> None:
    """Every entity of the offline day, every feature, to the bit; nothing else stored."""
    contract = world.contract
    keys = [entity_key(row) for row in offline[list(contract.entity)].itertuples(index=False, name=None)]
    found = store.lookup(keys)
    assert not found.missing and sorted(store.entity_keys()) == sorted(keys)
    assert found.snapshot.feature_names == tuple(contract.feature_names)
    for name in contract.feature_names:
        stored = [found.features[k][name] for k in keys]
        column = offline[name]
        if pd.api.types.is_float_dtype(column.dtype):
            expected = column.to_numpy(dtype="float64")
            served = np.array([np.nan if v is None else v for v in stored], dtype="float64")
            assert served.tobytes() == expected.tobytes(), name
        else:
            assert stored == column.tolist(), name


def test_a_night_publishes_its_day_and_an_older_day_leaves_the_newer_in_place(
    settings: Settings, online: OnlineStoreResource
) -> None:
    world = ChurnWorld(customers=300)
    version = world.write_feature_snapshots(settings.lake_root, [DAY, NEXT])

    result = _materialize(settings, online, (NEXT, NEXT), world)
    assert result.success
    [metadata] = _metadata(result)
    assert metadata["published"] is True and metadata["snapshot_day"] == NEXT.isoformat()
    assert metadata["dagster/row_count"] == world.customers and metadata["removed_entities"] == 0
    assert metadata["delta_table_version"] == version and metadata["backend"] == online.backend
    assert metadata["bytes"] > world.customers * 100 and metadata["seconds"] > 0
    store = online.open()
    info = store.current()
    assert (info.day, info.delta_version, info.entities) == (NEXT, version, world.customers)
    _assert_serves_exactly(store, _delta_day(settings, NEXT), world)

    # The day before: not published, the store keeps its later day, and says so.
    older = _materialize(settings, online, (DAY, DAY), world)
    assert older.success
    [skipped] = _metadata(older)
    assert skipped["published"] is False and skipped["snapshot_day"] == NEXT.isoformat()
    assert skipped["skipped_day"] == DAY.isoformat()
    assert store.current() == info
    assert f"the online store holds {NEXT}, later than {DAY}" in skipped["not_published_because"]

    # Asked for, it is published.
    forced = _materialize(settings, online, (DAY, DAY), world, allow_older_day=True)
    assert forced.success and _metadata(forced)[0]["published"] is True
    assert store.current().day == DAY
    _assert_serves_exactly(store, _delta_day(settings, DAY), world)
    store.close()


def test_a_ranged_run_publishes_its_last_day_and_the_entities_that_left_leave(
    settings: Settings, online: OnlineStoreResource
) -> None:
    world = ChurnWorld(customers=300)
    world.write_feature_snapshots(settings.lake_root, [DAY, NEXT])
    fewer = ChurnWorld(customers=260)  # forty customers are gone on the last day
    version = fewer.write_feature_snapshots(settings.lake_root, [LAST])
    assert _materialize(settings, online, (DAY, DAY), world).success

    result = _materialize(settings, online, (DAY, LAST), world)
    assert result.success
    metadata = _metadata(result)
    assert len(metadata) == 3  # every day of the range is materialized by the one publish of its last
    assert {m["snapshot_day"] for m in metadata} == {LAST.isoformat()}
    assert metadata[0]["removed_entities"] == 40 and metadata[0]["dagster/row_count"] == fewer.customers
    assert metadata[0]["delta_table_version"] == version
    store = online.open()
    assert store.current().day == LAST
    _assert_serves_exactly(store, _delta_day(settings, LAST), fewer)
    store.close()


def test_a_day_the_offline_store_lacks_fails_saying_what_to_materialize(settings: Settings) -> None:
    online = OnlineStoreResource.from_settings(settings)
    world = ChurnWorld(customers=50)
    world.write_feature_snapshots(settings.lake_root, [DAY])
    result = _materialize(settings, online, (LAST, LAST), world)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "materialize offline_store/feature_snapshots" in failure.step_failure_data.error.to_string()
    assert online.open().current() is None
