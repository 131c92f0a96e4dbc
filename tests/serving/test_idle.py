"""The work after the answers (``service/idle.py``): done while no request is in flight, never lost, bounded."""

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dagster_project.service.idle import AfterAnswers


def _run(scenario: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` on a thread of its own: an earlier test of this worker may hold an event loop running in the
    main thread (Playwright's sync API, the UI tests' session fixture, keeps one for the session)."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, scenario).result()


def _turns(count: int = 20):
    async def turn() -> None:
        for _ in range(count):
            await asyncio.sleep(0)

    return turn()


def test_work_waits_for_the_requests_in_flight() -> None:
    async def scenario() -> None:
        done: list[str] = []
        after = AfterAnswers(done.append, max_pending_rows=100)
        after.start()
        after.started()  # a request in flight
        after.submit("first", rows=1)
        after.started()  # and a second one
        await _turns()
        assert done == [], "nothing is done while requests are in flight"
        after.answered()
        await _turns()
        assert done == [], "one request is still in flight"
        after.answered()
        await _turns()
        assert done == ["first"]
        after.submit("second", rows=1)  # no request in flight: done on the next turns
        await _turns()
        assert done == ["first", "second"]
        await after.drain()

    _run(scenario())


def test_a_full_queue_does_the_work_on_the_requests_path_and_drain_does_the_rest() -> None:
    async def scenario() -> None:
        done: list[str] = []
        after = AfterAnswers(done.append, max_pending_rows=10)
        after.start()
        after.started()
        after.submit("a", rows=6)
        after.submit("b", rows=4)  # 10 rows waiting: the bound
        assert done == [] and after.pending == 2
        after.submit("c", rows=1)  # over the bound: done now, on the request's own path
        assert done == ["c"] and after.done_inline == 1
        await after.drain()  # shutdown with a request still in flight: nothing is left behind
        assert done == ["c", "a", "b"] and after.pending == 0

    _run(scenario())


def test_a_failing_item_does_not_stop_the_work_after_it() -> None:
    async def scenario() -> None:
        done: list[str] = []

        def work(item: str) -> None:
            if item == "bad":
                raise ValueError("a broken item")
            done.append(item)

        after = AfterAnswers(work, max_pending_rows=10)
        after.start()
        for item in ("bad", "good"):
            after.submit(item, rows=1)
        await _turns()
        assert done == ["good"]
        await after.drain()

    _run(scenario())


def test_the_idle_hook_runs_once_the_queue_empties_and_then_every_interval() -> None:
    async def scenario() -> None:
        events: list[str] = []
        after = AfterAnswers(
            events.append, max_pending_rows=10, when_idle=lambda: events.append("idle"), idle_seconds=0.05
        )
        after.start()
        await _turns()
        events.clear()
        after.submit("item", rows=1)
        await _turns()
        assert events[:2] == ["item", "idle"]
        await asyncio.sleep(0.2)  # idle: the hook again, every interval
        assert events.count("idle") >= 3
        await after.drain()
        assert events[-1] == "idle"  # and once more at shutdown

    _run(scenario())


def test_without_a_running_worker_the_work_is_done_at_once() -> None:
    done: list[str] = []
    after = AfterAnswers(done.append, max_pending_rows=10)  # not started: as in a process with no event loop yet
    after.submit("now", rows=1)
    assert done == ["now"] and after.done_inline == 0
