"""The online store, both backends alike: a real SQLite file (WAL) and a real redis-server.

What the prediction service and the skew gate rely on: a lookup gives exactly what was published (every bit of a
float), all from one snapshot even while a publish runs, a publish replaces the whole snapshot or nothing (killed
half way, the old snapshot stays and the next publish leaves nothing behind), and a store that cannot be reached
says so clearly.
"""

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deployed_platform import free_port

from dagster_project import faults
from dagster_project.online_store import (
    LOOKUP_BATCH,
    PUBLISH_BATCH,
    NoOnlineSnapshotError,
    OnlineStore,
    OnlineStoreUnavailableError,
    RedisOnlineStore,
    SqliteOnlineStore,
    entity_key,
)

DAY = dt.date(2025, 3, 1)
KEY = ["entity"]
BACKENDS = ["sqlite", "redis"]


def _open(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> OnlineStore:
    if backend == "sqlite":
        return SqliteOnlineStore(tmp_path / "online.sqlite")
    return RedisOnlineStore(request.getfixturevalue("redis_url"), prefix="test")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    opened = _open(request.param, tmp_path, request)
    yield opened
    opened.close()


def _frame(ids: range | list[int], marker: float = 0.0, features: int = 3) -> pd.DataFrame:
    """Entities ``e<i>`` with a ``marker`` feature (which snapshot wrote the row) and features derived from i."""
    ids = list(ids)
    frame = pd.DataFrame({"entity": [f"e{i}" for i in ids], "marker": marker})
    for n in range(features):
        frame[f"x{n}"] = np.array(ids, dtype="float64") / (n + 3)
    return frame


def _names(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in KEY]


def _publish(store: OnlineStore, frame: pd.DataFrame, day: dt.date = DAY, version: int | None = 1):
    return store.publish(frame, day=day, entity_columns=KEY, feature_names=_names(frame), delta_version=version)


def _bits(value: float) -> bytes:
    return np.float64(value).tobytes()


def _redis_keys(store: OnlineStore) -> set[str]:
    assert isinstance(store, RedisOnlineStore)
    return {k.decode() for k in store._client.keys(f"{store.prefix}:*")}


def test_a_lookup_gives_exactly_what_was_published(store: OnlineStore) -> None:
    rng = np.random.default_rng(7)
    # Any double's bits: random patterns (tiny, huge, subnormal, negative zero), kept where finite.
    raw = rng.integers(0, 2**63, 400, dtype=np.int64).view("float64")
    doubles = np.concatenate([[0.1, 1 / 3, -0.0, 5e-324, 1.7976931348623157e308, 2.0**-1074 * 3], raw])
    doubles = doubles[np.isfinite(doubles)][:300]
    n = len(doubles)
    frame = pd.DataFrame(
        {
            "entity": [f"é{i}" for i in range(n)],  # non-ASCII keys stay themselves
            "amount": doubles,
            "gap": np.where(np.arange(n) % 5 == 0, np.nan, doubles),  # NaN: a missing value, read back as None
            "count": np.arange(n, dtype="int64") * 1_000_000_007,
            "flag": np.arange(n) % 2 == 0,
            "plan": pd.Series(["basic", None, 'quo"te', "ünï"] * (n // 4 + 1))[:n].to_numpy(dtype=object),
            "nullable": pd.array([None if i % 3 == 0 else i for i in range(n)], dtype="Int64"),
            "since": [DAY - dt.timedelta(days=i) for i in range(n)],
        }
    )
    names = _names(frame)
    result = store.publish(frame, day=DAY, entity_columns=KEY, feature_names=names, delta_version=12)
    assert result.snapshot.entities == n and result.removed_entities == 0 and result.bytes_written > n * 50

    keys = [*frame["entity"], "nobody", "é0"]  # an unknown key, and a key asked twice
    found = store.lookup(keys)
    assert found.missing == ("nobody",)
    assert found.snapshot.day == DAY and found.snapshot.delta_version == 12
    assert found.snapshot.feature_names == tuple(names) and found.snapshot.entity_columns == tuple(KEY)
    assert found.snapshot == store.current()
    assert set(found.features) == set(frame["entity"])
    for row in frame.itertuples(index=False):
        stored = found.features[row.entity]
        assert set(stored) == set(names)
        assert _bits(stored["amount"]) == _bits(row.amount), row.entity
        assert stored["gap"] is None if np.isnan(row.gap) else _bits(stored["gap"]) == _bits(row.gap)
        assert stored["count"] == row.count and type(stored["count"]) is int
        assert stored["flag"] is bool(row.flag)
        assert stored["plan"] == row.plan
        assert stored["nullable"] == (None if row.nullable is pd.NA else int(row.nullable))
        assert stored["since"] == row.since.isoformat()
    assert store.entity_keys() == sorted(frame["entity"])
    assert store.lookup([]).features == {}


def test_composite_and_numeric_keys_name_one_entity_however_they_are_typed(store: OnlineStore) -> None:
    frame = pd.DataFrame({"region": ["north", "north", "south"], "shop": [7, 8, 7], "sales": [1.5, 2.5, 3.5]})
    store.publish(frame, day=DAY, entity_columns=["region", "shop"], feature_names=["sales"], delta_version=None)
    asked = [entity_key(["north", 8]), entity_key(["south", np.int64(7)]), entity_key(["north", 7.0])]
    found = store.lookup([*asked, entity_key(["south", 8])])
    assert [found.features[k]["sales"] for k in asked] == [2.5, 3.5, 1.5]
    assert found.missing == (entity_key(["south", 8]),)
    # A one-column numeric key is its text: 42, 42.0 and "42" are one entity.
    ids = pd.DataFrame({"id": [42, 43], "v": [1.0, 2.0]})
    store.publish(ids, day=DAY, entity_columns=["id"], feature_names=["v"], delta_version=None)
    assert store.lookup([entity_key([42.0]), entity_key(["43"])]).features == {"42": {"v": 1.0}, "43": {"v": 2.0}}


def test_every_lookup_reads_one_snapshot_while_snapshots_are_published(store: OnlineStore) -> None:
    """Readers look up without pause while five snapshots are published in a row: each lookup's rows all carry
    the marker of the snapshot the lookup reports, and no lookup fails. The snapshots differ in their entities
    too, and some lookups span several script calls (more keys than one call reads)."""
    generations = 5
    sizes = [6_000 + 1_000 * g for g in range(generations + 1)]
    _publish(store, _frame(range(sizes[0]), marker=0.0), day=DAY)
    stop = threading.Event()
    seen: list[set[dt.date]] = []
    errors: list[BaseException] = []
    lookups = [0]

    def read(thread: int) -> None:
        rng = np.random.default_rng(thread)
        days: set[dt.date] = set()
        try:
            while not stop.is_set():
                count = LOOKUP_BATCH + 500 if thread == 0 else 50
                keys = [f"e{i}" for i in rng.integers(0, sizes[-1], count)]
                found = store.lookup(keys)
                generation = (found.snapshot.day - DAY).days
                markers = {row["marker"] for row in found.features.values()}
                assert markers <= {float(generation)}, (found.snapshot.day, markers)
                size = sizes[generation]
                assert set(found.missing) == {k for k in keys if int(k[1:]) >= size}
                days.add(found.snapshot.day)
                lookups[0] += 1
        except BaseException as error:
            errors.append(error)
        seen.append(days)

    readers = [threading.Thread(target=read, args=(t,)) for t in range(3)]
    for reader in readers:
        reader.start()
    try:
        for generation in range(1, generations + 1):
            frame = _frame(range(sizes[generation]), marker=float(generation))
            _publish(store, frame, day=DAY + dt.timedelta(days=generation))
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=60)
    assert not errors, errors[0]
    assert lookups[0] > 20
    assert len(set().union(*seen)) >= 2, "the readers never saw a publish happen"
    assert store.current().day == DAY + dt.timedelta(days=generations)


def test_a_publish_replaces_the_snapshot_and_republishing_it_changes_nothing(store: OnlineStore) -> None:
    _publish(store, _frame(range(100)))
    later = _frame(range(10, 110), marker=1.0)
    result = _publish(store, later, day=DAY + dt.timedelta(days=1), version=2)
    assert result.removed_entities == 10 and result.snapshot.entities == 100
    assert store.entity_keys() == sorted(later["entity"])
    found = store.lookup(["e0", "e9", "e10", "e109"])
    assert found.missing == ("e0", "e9") and found.features["e109"]["marker"] == 1.0
    before = store.lookup(list(later["entity"])).features

    again = _publish(store, later, day=DAY + dt.timedelta(days=1), version=2)
    assert again.removed_entities == 0 and again.snapshot.entities == 100
    assert store.entity_keys() == sorted(later["entity"])
    assert store.lookup(list(later["entity"])).features == before
    if isinstance(store, RedisOnlineStore):
        # One generation on the server: the pointer's.
        assert _redis_keys(store) == {"test:pointer", f"test:gen:{again.snapshot.generation}"}


def test_a_snapshot_that_cannot_be_stored_faithfully_is_refused_and_the_store_is_unchanged(
    store: OnlineStore,
) -> None:
    _publish(store, _frame(range(20)))
    kept = store.current()
    duplicated = pd.concat([_frame(range(5)), _frame([3])], ignore_index=True)
    with pytest.raises(ValueError, match=r"duplicated entity values, e\.g\. \['e3'\]"):
        _publish(store, duplicated, day=DAY + dt.timedelta(days=1))
    # 42 and "42" become one key: a duplicate too.
    mixed = pd.DataFrame({"entity": pd.Series([42, "42", "x"], dtype=object), "v": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=r"\['42'\]"):
        _publish(store, mixed)
    no_key = pd.DataFrame({"entity": ["a", None], "v": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"1 rows without a entity \(rows \[1\]\)"):
        _publish(store, no_key)
    infinite = pd.DataFrame({"entity": ["a", "b"], "v": [1.0, np.inf]})
    with pytest.raises(ValueError, match=r"feature 'v' is infinite for 1 entities, e\.g\. \['b'\]"):
        _publish(store, infinite)
    with pytest.raises(KeyError, match="lacks the features"):
        store.publish(_frame(range(3)), day=DAY, entity_columns=KEY, feature_names=["nope"], delta_version=None)
    assert store.current() == kept
    assert store.entity_keys() == sorted(_frame(range(20))["entity"])


def test_a_publish_failing_half_way_leaves_the_old_snapshot_and_nothing_of_its_own(store: OnlineStore) -> None:
    """A value that cannot be written as JSON, in the second batch: the first batch was already written."""
    old = _frame(range(50))
    _publish(store, old)
    bad = _frame(range(PUBLISH_BATCH + 10), marker=1.0)
    bad["odd"] = pd.Series([object() if i == PUBLISH_BATCH + 3 else "fine" for i in range(len(bad))], dtype=object)
    with pytest.raises(TypeError, match=r"the features \[.odd.\] cannot be stored as JSON"):
        _publish(store, bad, day=DAY + dt.timedelta(days=1))
    assert store.current().day == DAY
    assert store.entity_keys() == sorted(old["entity"])
    assert store.lookup(["e1"]).features["e1"]["marker"] == 0.0
    if isinstance(store, RedisOnlineStore):
        assert len([k for k in _redis_keys(store) if ":gen:" in k]) == 1


KILLED_PUBLISH = """
import datetime as dt, sys
import numpy as np, pandas as pd
from dagster_project.online_store import RedisOnlineStore, SqliteOnlineStore
backend, where, entities = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = SqliteOnlineStore(where) if backend == "sqlite" else RedisOnlineStore(where, prefix="test")
frame = pd.DataFrame({"entity": [f"e{i}" for i in range(entities)], "marker": 1.0})
store.publish(frame, day=dt.date(2025, 3, 2), entity_columns=["entity"], feature_names=["marker"], delta_version=2)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_publish_killed_half_way_leaves_the_old_snapshot_readable_and_the_next_one_clean(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = _open(backend, tmp_path, request)
    old = _frame(range(100))
    _publish(store, old)
    where = str(tmp_path / "online.sqlite") if backend == "sqlite" else request.getfixturevalue("redis_url")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), faults.KILL_AT_VARIABLE: faults.ONLINE_STORE}
    entities = 3 * PUBLISH_BATCH
    done = subprocess.run(
        [sys.executable, "-c", KILLED_PUBLISH, backend, where, str(entities)], env=env, capture_output=True, text=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]

    # Killed after its first batch was written: readers still see the old snapshot, whole.
    assert store.current().day == DAY
    found = store.lookup(["e0", "e99", "e100", f"e{PUBLISH_BATCH - 1}"])
    assert set(found.features) == {"e0", "e99"} and {r["marker"] for r in found.features.values()} == {0.0}
    assert store.entity_keys() == sorted(old["entity"])
    if isinstance(store, RedisOnlineStore):
        generations = [k for k in _redis_keys(store) if ":gen:" in k]
        assert len(generations) == 2, "the killed publish wrote nothing: the test proves nothing"

    new = _frame(range(30, 130), marker=2.0)
    result = _publish(store, new, day=DAY + dt.timedelta(days=2), version=3)
    assert result.removed_entities == 30
    assert store.entity_keys() == sorted(new["entity"])  # no row of the killed publish
    assert {r["marker"] for r in store.lookup(list(new["entity"])).features.values()} == {2.0}
    if isinstance(store, RedisOnlineStore):
        assert _redis_keys(store) == {"test:pointer", f"test:gen:{result.snapshot.generation}"}
    store.close()


def test_a_lookup_before_any_publish_says_what_to_materialize(store: OnlineStore) -> None:
    assert store.current() is None and store.entity_keys() == []
    store.ping()
    with pytest.raises(NoOnlineSnapshotError, match="materialize serving/online_store"):
        store.lookup(["e1"])


def test_a_redis_server_that_is_down_is_reported_without_the_password() -> None:
    port = free_port()  # nothing listens there
    store = RedisOnlineStore(f"redis://:hunter2secret@127.0.0.1:{port}/0", socket_timeout=0.5)
    for call in (store.ping, store.current, lambda: store.lookup(["e1"]), lambda: _publish(store, _frame(range(3)))):
        with pytest.raises(OnlineStoreUnavailableError) as raised:
            call()
        message = str(raised.value)
        assert f"redis://127.0.0.1:{port}/0 cannot be reached" in message
        assert "hunter2secret" not in message


def test_a_sqlite_file_that_cannot_be_opened_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    store = SqliteOnlineStore(blocker / "online.sqlite")
    with pytest.raises(OnlineStoreUnavailableError, match="cannot be opened"):
        store.ping()
