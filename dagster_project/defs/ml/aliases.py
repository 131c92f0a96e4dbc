"""Moving a registry alias safely: compare-and-set, under one lock shared by every process that moves aliases.

MLflow's ``set_registered_model_alias`` overwrites whatever holds the alias. The promotion gate reads the champion,
scores for a while, then moves the alias: a rollback made in between would be silently undone. So every move goes
through ``move_alias``, which re-reads the alias and moves it only if it still points at the version the caller
judged against, all under ``registry_lock``: the gate, the rollback command and the rollback job (and the
registration of a new challenger) take the same lock. The lock is held for the re-read and the move only
(milliseconds), never while a model is scored, so a rollback during an incident never waits for a gate.

Which lock, by where MLflow keeps its registry (chosen by the tracking URI):

* a PostgreSQL database (``postgresql[+driver]://``): a session-level advisory lock in that very database. Every
  process that can move an alias reaches it, from any host, and PostgreSQL drops it when the holder's connection
  ends, so a killed process never leaves it held.
* anything else (the embedded SQLite store under the data root, an MLflow server over HTTP): an exclusive
  ``flock`` on ``MlflowResource.registry_lock_file``, beside the store. The kernel drops it when the holder dies.
  It serializes the processes of one host, which is all of them in the embedded default and in docker-compose
  (runs and the command share the data volume). With movers on several hosts in front of one MLflow server,
  point the platform at the server's PostgreSQL database instead: locks on shared file systems are not reliable.

The lock binds the platform's own code only: an alias set by hand in the MLflow UI does not take it. Such a move
made while the gate scores is still caught by the comparison; only one landing in the instant between the
comparison and the move is not.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from typing import Any, Literal

from dagster_project import faults
from dagster_project.resources import MlflowResource

LOCK_WAIT_SECONDS = 60.0  # holders keep the lock for milliseconds: a longer wait means a stuck holder
_POLL_SECONDS = 0.05
# The advisory lock's key: one 64-bit number for "the platform's registry aliases", the same in every process.
_ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"platform: mlflow registry aliases").digest()[:8], "big", signed=True)


class RegistryLockTimeoutError(TimeoutError):
    """Another process held the registry lock for longer than ``LOCK_WAIT_SECONDS``."""


class AliasMovedError(RuntimeError):
    """The alias no longer points at the version the caller expected: someone moved it meanwhile."""

    def __init__(self, alias: str, expected: str | None, found: str | None) -> None:
        self.alias, self.expected, self.found = alias, expected, found
        super().__init__(f"alias {alias!r} moved: expected {named(expected)}, found {named(found)}")


class _Unchecked(enum.Enum):
    ANY = "any"


ANY_VERSION = _Unchecked.ANY  # ``move_alias(expected=ANY_VERSION)``: move from whatever holds the alias


def named(version: str | None) -> str:
    """``v3``, or ``no version`` for an alias that points nowhere."""
    return "no version" if version is None else f"v{version}"


def version_by_alias(store: MlflowResource, alias: str) -> Any | None:
    """The ``ModelVersion`` holding ``alias``, or None (also when the registered model does not exist yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return store.client().get_model_version_by_alias(store.model_name, alias)
    except MlflowException as error:
        if error.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def move_alias(
    store: MlflowResource,
    alias: str,
    version: str,
    expected: str | Literal[_Unchecked.ANY] | None = ANY_VERSION,
) -> str | None:
    """Point ``alias`` at ``version`` if it still points at ``expected`` (None: at no version); the version it
    pointed at just before. ``expected=ANY_VERSION`` moves it from whatever holds it (a rollback names its target).

    Raises ``AliasMovedError`` and changes nothing if the alias points elsewhere.
    """
    with registry_lock(store, f"move {alias} to v{version}"):
        current = version_by_alias(store, alias)
        found = None if current is None else str(current.version)
        if expected is not ANY_VERSION and found != expected:
            raise AliasMovedError(alias, expected, found)
        store.client().set_registered_model_alias(store.model_name, alias, str(version))
        faults.write_point(faults.ALIAS)
    return found


@contextlib.contextmanager
def registry_lock(store: MlflowResource, purpose: str, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the lock that serializes alias moves on ``store``'s registry (see the module's docstring for which).

    ``purpose`` is recorded for whoever waits (``RegistryLockTimeoutError`` names the holder where it can).
    """
    if store.tracking_uri.split(":", 1)[0].lower().startswith("postgresql"):
        with _advisory_lock(store.tracking_uri, wait):
            yield
    else:
        with _file_lock(store, purpose, wait):
            yield


@contextlib.contextmanager
def _file_lock(store: MlflowResource, purpose: str, wait: float) -> Iterator[None]:
    # flock, not fcntl/lockf: its locks belong to the open file, so two threads of one process exclude each other too,
    # and closing some other descriptor of the file does not release it.
    path = store.registry_lock_file
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.seek(0)
                    raise RegistryLockTimeoutError(
                        f"the registry lock {path} was held for more than {wait:.0f} s by: "
                        f"{handle.read().strip() or 'unknown'} (still running: the kernel frees the lock when it exits)"
                    ) from None
                time.sleep(_POLL_SECONDS)
        try:
            handle.truncate(0)
            handle.write(f"{purpose} (pid {os.getpid()} on {socket.gethostname()})\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _advisory_lock(database_url: str, wait: float) -> Iterator[None]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(database_url, poolclass=NullPool)  # the lock lives exactly as long as this connection
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            deadline = time.monotonic() + wait
            while not connection.execute(text("select pg_try_advisory_lock(:key)"), {"key": _ADVISORY_KEY}).scalar():
                if time.monotonic() > deadline:
                    raise RegistryLockTimeoutError(
                        f"the registry's advisory lock ({_ADVISORY_KEY}) was held for more than {wait:.0f} s: see "
                        "pg_locks where locktype = 'advisory' for the holding backend"
                    )
                time.sleep(_POLL_SECONDS)
            try:
                yield
            finally:
                connection.execute(text("select pg_advisory_unlock(:key)"), {"key": _ADVISORY_KEY})
    finally:
        engine.dispose()
