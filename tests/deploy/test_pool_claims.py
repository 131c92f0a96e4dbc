"""The pool slots of both storages (``dagster_project.pool_claims``): the deployment's on a real PostgreSQL server
and the embedded default's SQLite. Many runs ask for a pool of one slot in the same instant, as two nights' first
warehouse steps do, and exactly one of them gets it.

Each run is a thread with a storage of its own (its own connections, as each run's process has): the claims
interleave on the database as processes' do. With Dagster's own ``PostgresEventLogStorage`` or
``SqliteEventLogStorage`` in place of these, several runs take the one slot in most rounds.

The embedded instance (``instance.local_instance``) claims through the SQLite one, and a home holding the file the
project wrote before is brought up to it; a file a team edited is left as it is.
"""

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from deployed_platform import PostgresServer

from dagster_project import pool_claims
from dagster_project.settings import Settings

POOL = "duckdb_warehouse"
RUNS = 8
ROUNDS = 6


@pytest.fixture(params=["postgres", "sqlite"])
def new_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], SqlEventLogStorage]]:
    """A factory of storages of one instance's event log: each call is another run's (own connections)."""
    if request.param == "sqlite":
        yield lambda: pool_claims.SqliteEventLogStorage(str(tmp_path / "history" / "runs"))
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"pool_claims_{uuid.uuid4().hex[:8]}"
    server.psql("postgres", f"create database {name}")
    url = server.url(name, driver="postgresql+psycopg2")
    yield lambda: pool_claims.PostgresEventLogStorage(url)
    server.psql("postgres", f"drop database {name} with (force)")


def _claim_at_once(storages: list[SqlEventLogStorage], run_ids: list[str]) -> list[bool]:
    """Every run claims the pool's slot for its step at the same instant; which of them got it."""
    start = threading.Barrier(len(storages))
    claimed = [False] * len(storages)
    errors: list[BaseException] = []

    def claim(i: int) -> None:
        try:
            start.wait()
            claimed[i] = storages[i].claim_concurrency_slot(POOL, run_ids[i], "feature_tables").is_claimed
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(storages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return claimed


def test_runs_asking_for_a_pool_of_one_at_the_same_instant_get_one_slot_between_them(
    new_storage: Callable[[], SqlEventLogStorage],
) -> None:
    storages = [new_storage() for _ in range(RUNS)]
    storages[0].set_concurrency_slots(POOL, 1)
    try:
        for round_ in range(ROUNDS):
            run_ids = [f"round{round_}-run{i}" for i in range(RUNS)]
            claimed = _claim_at_once(storages, run_ids)
            assert sum(claimed) == 1, f"round {round_}: {sum(claimed)} runs took the pool's one slot"
            holder = storages[0].get_concurrency_info(POOL)
            assert holder.claimed_slots[0].run_id == run_ids[claimed.index(True)]
            assert len(holder.pending_steps) == RUNS  # the winner's step and the seven queued behind it

            # The winner's step ends: its slot goes to one queued step, which claims it on its next try.
            winner = claimed.index(True)
            storages[winner].free_concurrency_slot_for_step(run_ids[winner], "feature_tables")
            retried = [s.claim_concurrency_slot(POOL, r, "feature_tables").is_claimed
                       for i, (s, r) in enumerate(zip(storages, run_ids, strict=True)) if i != winner]  # fmt: skip
            assert sum(retried) == 1, f"round {round_}: {sum(retried)} queued steps took the freed slot"

            for storage, run_id in zip(storages, run_ids, strict=True):
                storage.free_concurrency_slots_for_run(run_id)
            assert storages[0].get_concurrency_info(POOL).claimed_slots == []
    finally:
        for storage in storages:
            storage.dispose()


def test_the_embedded_instance_claims_through_this_storage_and_a_home_of_the_former_file_is_brought_up_to_it(
    settings: Settings,
) -> None:
    from dagster_project.instance import FORMER_INSTANCE_CONFIG, INSTANCE_CONFIG, local_instance

    with local_instance(settings) as instance:  # a new home: the project's file
        assert type(instance.event_log_storage) is pool_claims.SqliteEventLogStorage
    with local_instance(settings, fast_event_log=True) as instance:  # the story's writer claims the same way
        assert isinstance(instance.event_log_storage, pool_claims.SqliteEventLogStorage)

    config = Path(settings.dagster_home) / "dagster.yaml"
    config.write_text(FORMER_INSTANCE_CONFIG)  # as the project wrote it before
    with local_instance(settings) as instance:
        assert type(instance.event_log_storage) is pool_claims.SqliteEventLogStorage
    assert config.read_text() == INSTANCE_CONFIG

    edited = FORMER_INSTANCE_CONFIG + "retention:\n  schedule:\n    purge_after_days: 30\n"  # a team's own edit
    config.write_text(edited)
    with local_instance(settings) as instance:
        assert not isinstance(instance.event_log_storage, pool_claims.SqliteEventLogStorage)
    assert config.read_text() == edited
