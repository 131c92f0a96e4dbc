"""The online store: the latest feature snapshot of every entity, keyed by entity, for low-latency reads.

No Dagster here: the ``serving/online_store`` asset publishes into it, the prediction service and the skew gate
read from it. Two backends behind one interface:

- ``SqliteOnlineStore``, the embedded default: one SQLite file in WAL mode, which needs no server and lets any
  number of readers (threads or processes) read while a publish writes;
- ``RedisOnlineStore``, for deployments: a ``redis-server`` (the compose service ``redis``).

A publish is atomic for readers: a reader sees the old snapshot or the new one, never a mix. SQLite gets it from
one transaction (readers in WAL mode keep reading the last committed state until the publish commits); Redis from
versioned keys and a pointer swap (each publish writes a new generation, one hash, and then swaps the pointer; a
lookup reads the pointer and the hash in one server-side script, so no swap can fall between the two). A publish
replaces the whole snapshot, so the entities that left the snapshot leave the store, and publishing the same
snapshot twice leaves the same state. A publish killed half way leaves the old snapshot readable; the next one
removes what the killed one left behind.

Each entity's features are stored as one JSON object (feature name to value): JSON keeps a float's every bit (it
writes the shortest repr that reads back to the same double), so the skew gate can compare online and offline
features exactly. A missing value is null; an infinite one is refused. The rows are encoded with orjson, a column
at a time, ``PUBLISH_BATCH`` rows at a time (``encode_batches``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import math
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from dagster_project import faults

# Entities written per round trip (Redis) or per executemany batch (SQLite) while publishing.
PUBLISH_BATCH = 5_000
# Entities looked up per server-side script call: Lua's unpack() has a stack limit of about 8,000 values.
LOOKUP_BATCH = 1_000


class OnlineStoreUnavailableError(RuntimeError):
    """The online store cannot be reached (a Redis server that is down, a SQLite file that cannot be opened)."""


class NoOnlineSnapshotError(LookupError):
    """The online store holds no snapshot yet: materialize ``serving/online_store`` first."""


@dataclass(frozen=True)
class SnapshotInfo:
    """What the store holds: the snapshot day, where it came from, and its shape."""

    day: dt.date
    delta_version: int | None  # the offline store's Delta version the snapshot was read from
    entities: int
    entity_columns: tuple[str, ...]
    feature_names: tuple[str, ...]
    published_at: str  # ISO, UTC
    generation: str  # unique per publish

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "day": self.day.isoformat()})

    @classmethod
    def from_json(cls, text: str | bytes) -> SnapshotInfo:
        values = json.loads(text)
        return cls(
            **{
                **values,
                "day": dt.date.fromisoformat(values["day"]),
                "entity_columns": tuple(values["entity_columns"]),
                "feature_names": tuple(values["feature_names"]),
            }
        )


@functools.lru_cache(maxsize=16)
def snapshot_info(text: str | bytes) -> SnapshotInfo:
    """``SnapshotInfo.from_json``, once per snapshot: every lookup reads the snapshot's description, which changes
    once a publish."""
    return SnapshotInfo.from_json(text)


@dataclass(frozen=True)
class Lookup:
    """The stored features of the entities asked for, all from one snapshot; keys not stored are ``missing``."""

    snapshot: SnapshotInfo
    features: dict[str, dict[str, Any]]  # entity key -> feature name -> value
    missing: tuple[str, ...]
    payloads: dict[str, str] = field(default_factory=dict)  # entity key -> its stored JSON, as read


@dataclass(frozen=True)
class PublishResult:
    snapshot: SnapshotInfo
    bytes_written: int
    seconds: float
    removed_entities: int  # entities of the previous snapshot that are not in this one


def entity_key(values: Sequence[Any]) -> str:
    """The store's key of an entity from its key column values: the value itself for a one-column key, a compact
    JSON list for a composite one. Numbers and text alike become text, so ``42`` and ``"42"`` name the same entity.
    """
    texts = [_key_text(v) for v in values]
    return texts[0] if len(texts) == 1 else orjson.dumps(texts).decode()


def _key_text(value: Any) -> str:
    if isinstance(value, np.generic):
        return _key_text(value.item())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def plain_value(value: Any) -> Any:
    """A feature value as JSON holds it: None for missing, Python numbers and text, ISO dates."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Decimal):
        return float(value)  # what the model reads: every number is a float64 at its input
    if isinstance(value, dt.date | dt.datetime | pd.Timestamp):
        return value.isoformat()
    return value


def snapshot_keys(frame: pd.DataFrame, entity_columns: Sequence[str], day: dt.date) -> list[str]:
    """The ``entity_key`` of every row of ``frame``, a whole column at a time.

    Raises, naming the rows or the entities, if a key is missing or two rows name the same entity (after the
    keys become text: ``42`` and ``"42"`` are one entity): the store holds one row per entity."""
    columns = list(entity_columns)
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise KeyError(f"the snapshot of {day} lacks the entity columns {absent}")
    missing = frame[columns].isna().any(axis=1).to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)[:3].tolist()
        raise ValueError(
            f"the snapshot of {day} has {int(missing.sum())} rows without a {'/'.join(columns)} (rows {rows}): "
            "every row of the online store is an entity"
        )
    texts = [_key_texts(frame[c]) for c in columns]
    keys = texts[0] if len(columns) == 1 else [orjson.dumps(list(row)).decode() for row in zip(*texts, strict=True)]
    duplicated = pd.Index(keys).duplicated(keep=False)
    if duplicated.any():
        repeated = list(dict.fromkeys(k for k, d in zip(keys, duplicated, strict=True) if d))
        raise ValueError(
            f"the snapshot of {day} has {len(repeated)} duplicated {'/'.join(columns)} values, e.g. "
            f"{repeated[:3]}: the online store holds one row per entity"
        )
    return keys


def _key_texts(column: pd.Series) -> list[str]:
    """``_key_text`` of every value of a key column; text and integer columns without a Python call per value."""
    values = column.tolist()
    if pd.api.types.is_integer_dtype(column.dtype):
        return list(map(str, values))
    if all(type(v) is str for v in values):
        return values
    return [_key_text(v) for v in values]


def check_feature_values(frame: pd.DataFrame, feature_names: Sequence[str], keys: Sequence[str]) -> None:
    """Refuse infinite numbers (JSON has none), naming the feature and the entities: nothing is dropped silently."""
    absent = [c for c in feature_names if c not in frame.columns]
    if absent:
        raise KeyError(f"the snapshot lacks the features {absent}")
    for name in feature_names:
        column = frame[name]
        if not pd.api.types.is_float_dtype(column.dtype):
            continue
        infinite = np.isinf(column.to_numpy(dtype="float64", na_value=np.nan))
        if infinite.any():
            examples = [keys[i] for i in np.flatnonzero(infinite)[:3]]
            raise ValueError(
                f"feature {name!r} is infinite for {int(infinite.sum())} entities, e.g. {examples}: the online "
                "store holds finite numbers or nulls"
            )


def _feature_values(column: pd.Series) -> list[Any]:
    """A feature column as values ``orjson`` writes: one conversion per column, a Python call per value only for
    the rare types that need one (dates, decimals, mixed objects)."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiub":
        return column.to_numpy().tolist()  # floats stay floats (NaN is written as null), ints and bools as they are
    if isinstance(dtype, np.dtype) and dtype.kind == "O":
        values = column.tolist()
        if all(type(v) is str for v in values):
            return values
        return [v if type(v) is str else plain_value(v) for v in values]
    # Extension types (nullable integers, floats, booleans and text; dates with a zone): NA becomes None.
    return [plain_value(v) for v in column.astype(object).tolist()]


def encode_batches(
    frame: pd.DataFrame, keys: Sequence[str], feature_names: Sequence[str], batch_rows: int = PUBLISH_BATCH
) -> Iterator[list[tuple[str, str]]]:
    """``(entity key, JSON features)`` for the rows of ``frame`` (``keys``, row for row), ``batch_rows`` at a time.

    Each value is converted a column at a time and each row written by orjson, which writes a float as the shortest
    text that reads back to the same double (NaN, a missing value, as null): ten times faster than ``json.dumps``
    per row, every bit kept. Only a batch's JSON is held at once."""
    names = list(feature_names)
    dumps = orjson.dumps
    for start in range(0, len(frame), batch_rows):
        part = frame.iloc[start : start + batch_rows]
        columns = [_feature_values(part[name]) for name in names]
        rows = zip(*columns, strict=True) if columns else ((),) * len(part)
        try:
            yield [
                (key, dumps(dict(zip(names, row, strict=True))).decode())
                for key, row in zip(keys[start : start + batch_rows], rows, strict=True)
            ]
        except orjson.JSONEncodeError as error:
            raise TypeError(
                f"the features {_unwritable(names, columns)} cannot be stored as JSON ({error}): store numbers, text, "
                "booleans or dates"
            ) from None


def _unwritable(names: list[str], columns: list[list[Any]]) -> list[str]:
    """The features whose values JSON cannot hold (the cause of a failed batch, named in its error)."""
    failing = []
    for name, values in zip(names, columns, strict=True):
        try:
            orjson.dumps(values)
        except orjson.JSONEncodeError:
            failing.append(name)
    return failing


def encode_rows(
    frame: pd.DataFrame, entity_columns: Sequence[str], feature_names: Sequence[str]
) -> Iterator[tuple[str, str]]:
    """``(entity key, JSON features)`` for every row of ``frame``."""
    keys = snapshot_keys(frame, entity_columns, dt.date.min)
    for batch in encode_batches(frame, keys, feature_names):
        yield from batch


def decode_features(payload: str | bytes) -> dict[str, Any]:
    """A stored entity's features (feature name to value)."""
    return orjson.loads(payload)


class OnlineStore(ABC):
    """The interface both backends implement."""

    @abstractmethod
    def publish(
        self,
        frame: pd.DataFrame,
        *,
        day: dt.date,
        entity_columns: Sequence[str],
        feature_names: Sequence[str],
        delta_version: int | None,
    ) -> PublishResult:
        """Replace the stored snapshot with ``frame`` (one row per entity), atomically for readers."""

    @abstractmethod
    def current(self) -> SnapshotInfo | None:
        """The snapshot readers see now; None if nothing was published yet."""

    @abstractmethod
    def lookup(self, keys: Sequence[str]) -> Lookup:
        """The features of ``keys`` (``entity_key`` values), all from one snapshot."""

    @abstractmethod
    def ping(self) -> None:
        """Raise ``OnlineStoreUnavailableError`` if the store cannot be reached."""

    @abstractmethod
    def entity_keys(self) -> list[str]:
        """Every stored entity key of the current snapshot (for checks and tests; not for the request path)."""

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release connections."""

    @staticmethod
    def _keys(frame: pd.DataFrame, day: dt.date, entity_columns: Sequence[str], feature_names: Sequence[str]):
        """The rows' entity keys, once the snapshot is known to be publishable (raises before anything is written)."""
        keys = snapshot_keys(frame, entity_columns, day)
        check_feature_values(frame, feature_names, keys)
        return keys


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _snapshot_info(
    frame: pd.DataFrame,
    day: dt.date,
    entity_columns: Sequence[str],
    feature_names: Sequence[str],
    delta_version: int | None,
) -> SnapshotInfo:
    return SnapshotInfo(
        day=day,
        delta_version=delta_version,
        entities=len(frame),
        entity_columns=tuple(entity_columns),
        feature_names=tuple(feature_names),
        published_at=_now(),
        generation=uuid.uuid4().hex,
    )


class SqliteOnlineStore(OnlineStore):
    """One SQLite file in WAL mode: a publish is one transaction, readers keep the last committed snapshot."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30_000) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()  # one connection per thread: sqlite3 connections are not shared

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
                # 16 KiB pages (set before the file's first table): an entity's JSON of a few hundred bytes to a few
                # KiB fits a page's cell without overflow pages, which makes a publish 4 times faster than at 4 KiB.
                connection.execute("PRAGMA page_size=16384")
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; a publish can be rerun
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), info TEXT NOT NULL)"
                )
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS features (entity TEXT PRIMARY KEY, payload TEXT NOT NULL) WITHOUT ROWID"
                )
            except (sqlite3.Error, OSError) as error:
                raise OnlineStoreUnavailableError(f"the online store {self.path} cannot be opened: {error}") from error
            self._local.connection = connection
        return connection

    def publish(
        self,
        frame: pd.DataFrame,
        *,
        day: dt.date,
        entity_columns: Sequence[str],
        feature_names: Sequence[str],
        delta_version: int | None,
    ) -> PublishResult:
        started = time.perf_counter()
        keys = self._keys(frame, day, entity_columns, feature_names)
        info = _snapshot_info(frame, day, entity_columns, feature_names, delta_version)
        connection = self._connection()
        written = 0
        connection.execute("BEGIN IMMEDIATE")  # one writer; readers go on reading the committed snapshot
        try:
            previous = {row[0] for row in connection.execute("SELECT entity FROM features")}
            connection.execute("DELETE FROM features")
            for batch in encode_batches(frame, keys, feature_names):
                connection.executemany("INSERT INTO features (entity, payload) VALUES (?, ?)", batch)
                written += sum(len(k) + len(v) for k, v in batch)
                faults.write_point(faults.ONLINE_STORE)
            connection.execute("INSERT OR REPLACE INTO snapshot (id, info) VALUES (1, ?)", (info.to_json(),))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        # Fold the WAL back into the file, so it does not grow by a snapshot per night (readers may hold it: PASSIVE).
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return PublishResult(
            snapshot=info,
            bytes_written=written,
            seconds=time.perf_counter() - started,
            removed_entities=len(previous.difference(keys)),
        )

    def current(self) -> SnapshotInfo | None:
        try:
            row = self._connection().execute("SELECT info FROM snapshot WHERE id = 1").fetchone()
        except sqlite3.Error as error:
            raise OnlineStoreUnavailableError(f"the online store {self.path} cannot be read: {error}") from error
        return None if row is None else SnapshotInfo.from_json(row[0])

    def lookup(self, keys: Sequence[str]) -> Lookup:
        connection = self._connection()
        found: dict[str, dict[str, Any]] = {}
        payloads: dict[str, str] = {}
        try:
            connection.execute("BEGIN")  # one read transaction: the snapshot row and the features agree
            try:
                row = connection.execute("SELECT info FROM snapshot WHERE id = 1").fetchone()
                if row is None:
                    raise NoOnlineSnapshotError(
                        f"the online store {self.path} holds no snapshot: materialize serving/online_store"
                    )
                unique = list(dict.fromkeys(keys))
                for start in range(0, len(unique), LOOKUP_BATCH):
                    chunk = unique[start : start + LOOKUP_BATCH]
                    marks = ",".join("?" * len(chunk))
                    for entity, payload in connection.execute(
                        f"SELECT entity, payload FROM features WHERE entity IN ({marks})", chunk
                    ):
                        found[entity] = decode_features(payload)
                        payloads[entity] = payload
            finally:
                connection.execute("COMMIT")
        except sqlite3.Error as error:
            raise OnlineStoreUnavailableError(f"the online store {self.path} cannot be read: {error}") from error
        return Lookup(
            snapshot=snapshot_info(row[0]),
            features=found,
            missing=tuple(k for k in dict.fromkeys(keys) if k not in found),
            payloads=payloads,
        )

    def ping(self) -> None:
        try:
            self._connection().execute("SELECT 1").fetchone()
        except sqlite3.Error as error:
            raise OnlineStoreUnavailableError(f"the online store {self.path} cannot be read: {error}") from error

    def entity_keys(self) -> list[str]:
        return [row[0] for row in self._connection().execute("SELECT entity FROM features ORDER BY entity")]

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


# Reads the pointer and the features of one generation in one atomic step: no publish can swap in between.
_LOOKUP_SCRIPT = """
local pointer = redis.call('GET', KEYS[1])
if not pointer then return false end
if #ARGV < 2 then return {pointer, {}} end
local generation = cjson.decode(pointer)['generation']
return {pointer, redis.call('HMGET', ARGV[1] .. generation, unpack(ARGV, 2))}
"""

# The swap, only if the new generation holds all its entities: a generation removed under a publish (another
# publish running at the same time cleans up what it takes for a killed publish's leftovers) is never published.
_SWAP_SCRIPT = """
if redis.call('HLEN', KEYS[2]) ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


class RedisOnlineStore(OnlineStore):
    """A Redis server: each publish is a new generation (one hash of entity -> features), then a pointer swap.

    Keys, under ``prefix``: ``<prefix>:pointer`` (the current ``SnapshotInfo`` as JSON) and
    ``<prefix>:gen:<generation>`` (the hash). Once the pointer is swapped, every other generation is deleted (the
    previous one, and what a killed publish left): a lookup resolves the pointer and reads the hash in one script,
    so no reader can hold an older generation, and the server holds one snapshot, not two.
    """

    def __init__(self, url: str, *, prefix: str = "online", socket_timeout: float = 2.0) -> None:
        import redis

        self.url = url
        self.prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
        self._lookup = self._client.register_script(_LOOKUP_SCRIPT)
        self._swap = self._client.register_script(_SWAP_SCRIPT)

    @property
    def _pointer(self) -> str:
        return f"{self.prefix}:pointer"

    def _generation_key(self, generation: str) -> str:
        return f"{self.prefix}:gen:{generation}"

    def _unavailable(self, error: Exception) -> OnlineStoreUnavailableError:
        return OnlineStoreUnavailableError(f"the online store at {self._safe_url} cannot be reached: {error}")

    @property
    def _safe_url(self) -> str:
        """The URL without a password, for messages."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"

    def publish(
        self,
        frame: pd.DataFrame,
        *,
        day: dt.date,
        entity_columns: Sequence[str],
        feature_names: Sequence[str],
        delta_version: int | None,
    ) -> PublishResult:
        import redis

        started = time.perf_counter()
        keys = self._keys(frame, day, entity_columns, feature_names)
        info = _snapshot_info(frame, day, entity_columns, feature_names, delta_version)
        target = self._generation_key(info.generation)
        written = 0
        try:
            previous = self.current()
            for batch in encode_batches(frame, keys, feature_names):
                self._client.hset(target, mapping=dict(batch))
                written += sum(len(k) + len(v) for k, v in batch)
                faults.write_point(faults.ONLINE_STORE)
            removed = 0
            if previous is not None:
                # The entities that left: in the previous generation, not in this one.
                old = self._client.hkeys(self._generation_key(previous.generation))
                removed = len({_text(k) for k in old}.difference(keys))
            # The swap: readers move to the new generation here.
            if not self._swap(keys=[self._pointer, target], args=[info.to_json(), len(keys)]):
                raise RuntimeError(
                    f"the generation {info.generation} of the online store at {self._safe_url} lost entities while "
                    "it was written (another publish removed it): nothing was published; publish again"
                )
            # A lookup reads the pointer and the hash in one script, so no reader holds an older generation now.
            self._remove_generations(keep=info.generation)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise self._unavailable(error) from error
        except BaseException:
            self._discard(target)
            raise
        return PublishResult(
            snapshot=info, bytes_written=written, seconds=time.perf_counter() - started, removed_entities=removed
        )

    def _discard(self, key: str) -> None:
        """Remove a generation a failed publish left (best effort: a killed one is removed by the next publish)."""
        import redis

        with contextlib.suppress(redis.RedisError):
            self._client.unlink(key)

    def _remove_generations(self, keep: str) -> None:
        keep_key = self._generation_key(keep)
        found = self._client.scan_iter(match=f"{self.prefix}:gen:*", count=1000)
        stale = [k for k in found if _text(k) != keep_key]
        if stale:
            self._client.unlink(*stale)

    def current(self) -> SnapshotInfo | None:
        import redis

        try:
            pointer = self._client.get(self._pointer)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise self._unavailable(error) from error
        return None if pointer is None else SnapshotInfo.from_json(pointer)

    def lookup(self, keys: Sequence[str]) -> Lookup:
        import redis

        unique = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        payloads: dict[str, str] = {}
        snapshot: SnapshotInfo | None = None
        try:
            for attempt in range(3):
                found.clear()
                payloads.clear()
                snapshot = None
                consistent = True
                for start in range(0, max(len(unique), 1), LOOKUP_BATCH):
                    chunk = unique[start : start + LOOKUP_BATCH]
                    answer = self._lookup(keys=[self._pointer], args=[f"{self.prefix}:gen:", *chunk])
                    if not answer:
                        raise NoOnlineSnapshotError(
                            f"the online store at {self._safe_url} holds no snapshot: materialize serving/online_store"
                        )
                    pointer, replies = answer
                    info = snapshot_info(pointer)
                    if snapshot is not None and info.generation != snapshot.generation:
                        consistent = False  # a publish swapped between two chunks: read again, all from one
                        break
                    snapshot = info
                    for key, payload in zip(chunk, replies, strict=True):
                        if payload is not None:
                            found[key] = decode_features(payload)
                            payloads[key] = payload.decode()
                if consistent:
                    break
                if attempt == 2:
                    raise OnlineStoreUnavailableError("the online store changed under three lookups in a row")
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise self._unavailable(error) from error
        assert snapshot is not None
        return Lookup(
            snapshot=snapshot, features=found, missing=tuple(k for k in unique if k not in found), payloads=payloads
        )

    def ping(self) -> None:
        import redis

        try:
            self._client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise self._unavailable(error) from error

    def entity_keys(self) -> list[str]:
        import redis

        info = self.current()
        if info is None:
            return []
        try:
            return sorted(_text(k) for k in self._client.hkeys(self._generation_key(info.generation)))
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise self._unavailable(error) from error

    def close(self) -> None:
        self._client.close()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def open_store(backend: str, *, sqlite_path: str | Path, redis_url: str, redis_prefix: str = "online") -> OnlineStore:
    """The online store the settings name: ``sqlite`` (embedded, the default) or ``redis``."""
    if backend == "sqlite":
        return SqliteOnlineStore(sqlite_path)
    if backend == "redis":
        return RedisOnlineStore(redis_url, prefix=redis_prefix)
    raise ValueError(f"unknown online store backend {backend!r}: use 'sqlite' or 'redis'")


def features_frame(lookup: Lookup, keys: Sequence[str], overrides: Mapping[str, Mapping[str, Any]] | None = None):
    """The features of ``keys`` as a frame (one row per key, in order), with request-time ``overrides`` applied."""
    rows = []
    for key in keys:
        row = dict(lookup.features[key])
        row.update((overrides or {}).get(key, {}))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(lookup.snapshot.feature_names))
