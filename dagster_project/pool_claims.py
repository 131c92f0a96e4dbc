"""Dagster's storages with the slots of a pool claimed by one process at a time: PostgreSQL (the deployment) and
SQLite (the embedded default).

Dagster (1.13) claims a slot of a pool in several statements, each in its own transaction: it counts the pool's
unassigned slots, queues the step as assigned when there was one, then picks a free slot row (``SELECT … FOR
UPDATE SKIP LOCKED``, whose lock autocommit drops at once; SQLite has no such lock) and writes its claim on it. Two
runs asking for the same pool in the same instant both pass every check and both take the one slot: CI once saw
two nights' ``feature_tables`` steps in the warehouse's pool of one at the same time, two writers of one DuckDB
file.

Here each claim and each release of a slot holds a lock of the instance, so they follow one another: on PostgreSQL
an advisory lock of the database, on SQLite an exclusive ``flock`` of a file beside the event log's index. Either is
held by a session or an open file of its own, which ends with the claim: a process killed mid-claim leaves no lock
behind. ``deploy/dagster.yaml`` and the embedded ``dagster.yaml`` (``instance.INSTANCE_CONFIG``) name the storages
below; the tables and files, and everything else Dagster does with them, are Dagster's own.
"""

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator

import dagster_postgres
import sqlalchemy as db
import yaml
from dagster._core.storage import sqlite_storage
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.event_log import SqliteEventLogStorage as DagsterSqliteEventLogStorage
from dagster._serdes import ConfigurableClassData
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

# The advisory lock's key, a 64-bit integer of the database's one namespace of advisory locks: any fixed value
# other applications on the same database do not use. These are the bytes of "poolslot".
POOL_CLAIMS_LOCK_KEY = int.from_bytes(b"poolslot", "big", signed=True)
# The SQLite event log's lock file, in its folder (not ``*.db``: Dagster takes those for runs' databases).
POOL_CLAIMS_LOCK_FILE = "pool_claims.lock"


class SerializedPoolClaims:
    """An event log whose pool claims and releases run under ``_pool_claims_lock`` (see above)."""

    def __init__(self, *args, **kwargs) -> None:
        self._pool_claims_depth = threading.local()  # a claim may release or assign inside; the lock is taken once
        super().__init__(*args, **kwargs)

    def _pool_claims_lock(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    @contextlib.contextmanager
    def _pool_claims_serialized(self) -> Iterator[None]:
        depth = getattr(self._pool_claims_depth, "value", 0)
        if depth:
            self._pool_claims_depth.value = depth + 1
            try:
                yield
            finally:
                self._pool_claims_depth.value = depth
            return
        with self._pool_claims_lock():
            self._pool_claims_depth.value = 1
            try:
                yield
            finally:
                self._pool_claims_depth.value = 0

    def claim_concurrency_slot(self, concurrency_key, run_id, step_key, priority=None):
        with self._pool_claims_serialized():
            return super().claim_concurrency_slot(concurrency_key, run_id, step_key, priority)

    def free_concurrency_slot_for_step(self, run_id, step_key):
        with self._pool_claims_serialized():
            return super().free_concurrency_slot_for_step(run_id, step_key)

    def free_concurrency_slots_for_run(self, run_id):
        with self._pool_claims_serialized():
            return super().free_concurrency_slots_for_run(run_id)

    def initialize_concurrency_limit_to_default(self, concurrency_key):
        with self._pool_claims_serialized():
            return super().initialize_concurrency_limit_to_default(concurrency_key)

    def set_concurrency_slots(self, concurrency_key, num):
        with self._pool_claims_serialized():
            return super().set_concurrency_slots(concurrency_key, num)

    def delete_concurrency_limit(self, concurrency_key):
        with self._pool_claims_serialized():
            return super().delete_concurrency_limit(concurrency_key)


class PostgresEventLogStorage(SerializedPoolClaims, dagster_postgres.PostgresEventLogStorage):
    """Dagster's event log on PostgreSQL; its pool slots are claimed and released under an advisory lock."""

    @contextlib.contextmanager
    def _pool_claims_lock(self) -> Iterator[None]:
        with self._connect() as session:
            session.execute(db.text("SELECT pg_advisory_lock(:key)"), {"key": POOL_CLAIMS_LOCK_KEY})
            try:
                yield
            finally:
                session.execute(db.text("SELECT pg_advisory_unlock(:key)"), {"key": POOL_CLAIMS_LOCK_KEY})


class SqliteEventLogStorage(SerializedPoolClaims, DagsterSqliteEventLogStorage):
    """Dagster's event log on SQLite; its pool slots are claimed and released under a ``flock`` of a file."""

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "SqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    @contextlib.contextmanager
    def _pool_claims_lock(self) -> Iterator[None]:
        # A new open file each time: flock excludes other open files, so other threads of this process too.
        with open(os.path.join(self._base_dir, POOL_CLAIMS_LOCK_FILE), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class DagsterSqliteStorage(sqlite_storage.DagsterSqliteStorage):
    """Dagster's SQLite storage (runs, event log, schedules under ``base_dir``, its layout), with the event log
    above. Configured as Dagster's ``storage: sqlite`` is, under ``storage: custom``."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        # Dagster's own constructor, with this module's event log (building Dagster's first would open its index).
        self.base_dir = base_dir
        self._run_storage = sqlite_storage.SqliteRunStorage.from_local(sqlite_storage._runs_directory(base_dir))
        self._event_log_storage = SqliteEventLogStorage(sqlite_storage._event_logs_directory(base_dir))
        self._schedule_storage = sqlite_storage.SqliteScheduleStorage.from_local(
            sqlite_storage._schedule_directory(base_dir)
        )
        self._inst_data = inst_data
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "DagsterSqliteStorage":
        return cls.from_local(inst_data=inst_data, **config_value)

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        config = {"base_dir": sqlite_storage._event_logs_directory(self.base_dir)}
        return ConfigurableClassData(__name__, SqliteEventLogStorage.__name__, yaml.dump(config))


class DagsterPostgresStorage(dagster_postgres.DagsterPostgresStorage):
    """Dagster's PostgreSQL storage (runs, event log, schedules), with the event log above. Configured as Dagster's
    ``storage: postgres`` is, under ``storage: custom``."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider=None,
    ) -> None:
        # Dagster's own constructor, with this module's event log: building Dagster's first would cost its table
        # checks again for nothing, in every process that opens the instance.
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        self._run_storage = dagster_postgres.PostgresRunStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._event_log_storage = PostgresEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._schedule_storage = dagster_postgres.PostgresScheduleStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "DagsterPostgresStorage":
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        if self.inst_data is None:
            return None
        return ConfigurableClassData(__name__, PostgresEventLogStorage.__name__, self.inst_data.config_yaml)
