"""Work that follows an answer (the shadow's scores, the prediction log's rows), done when no request waits.

The service is one event loop on one core. Done right after each answer, this work would sit in the queue ahead of
the next requests: at a hundred entities a request the shadow alone adds a third to every request's cost, and the
tail grows with the load it adds. Done on a thread, it would be worse: the trees' code lets the GIL go for each
tree, and a request that must win it back from a busy thread waits up to the interpreter's switch interval (5 ms)
each time. So it waits in a queue and the loop does it while no request is in flight: a request that arrives
meanwhile waits for at most one item (about a millisecond), never for the backlog.

The loop cannot see a request that has arrived but not yet started, so before each item the worker lets the loop
turn a few times (``SETTLE_TURNS``): bytes already on a socket become a request in flight first. Under an overload
that leaves no idle moment, the queue is bounded (``max_pending_rows``): past it, the item is done on the request's
own path, and answers slow down rather than memory growing. ``drain`` does what is left, at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

# Turns of the event loop before an item: the bytes of a request already received become a request in flight.
SETTLE_TURNS = 3


class AfterAnswers:
    """A queue of ``(rows, item)`` done by ``work(item)`` on the event loop while no request is in flight."""

    def __init__(
        self,
        work: Callable[[Any], None],
        *,
        max_pending_rows: int,
        when_idle: Callable[[], None] | None = None,
        idle_seconds: float = 0.5,
    ) -> None:
        self.work = work
        self.max_pending_rows = max_pending_rows
        self.when_idle = when_idle  # called once the queue is empty, and every ``idle_seconds`` while it stays so
        self.idle_seconds = idle_seconds
        self.in_flight = 0  # requests started and not yet answered (``started`` / ``answered``)
        self.done_inline = 0  # items done on a request's path because the queue was full
        self._items: deque[tuple[int, Any]] = deque()
        self._pending_rows = 0
        self._idle: asyncio.Event | None = None
        self._queued: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._items)

    def start(self) -> None:
        """Start the worker on the running loop."""
        self._idle, self._queued = asyncio.Event(), asyncio.Event()
        self._idle.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="after-answers")

    def started(self) -> None:
        self.in_flight += 1
        if self._idle is not None:
            self._idle.clear()

    def answered(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    def submit(self, item: Any, rows: int) -> None:
        """Queue ``item`` (``rows``: its size, for the bound); with the queue full or no worker, do it now."""
        if self._task is None or self._pending_rows + rows > self.max_pending_rows:
            self.done_inline += self._task is not None
            self.work(item)
            return
        self._items.append((rows, item))
        self._pending_rows += rows
        assert self._queued is not None
        self._queued.set()

    async def _run(self) -> None:
        assert self._idle is not None and self._queued is not None
        while True:
            if not self._items:
                self._queued.clear()
                self._call_when_idle()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queued.wait(), timeout=self.idle_seconds)
                continue
            await self._idle.wait()
            for _ in range(SETTLE_TURNS):
                await asyncio.sleep(0)
            if self.in_flight or not self._items:
                continue
            self._do_one()

    def _call_when_idle(self) -> None:
        if self.when_idle is not None:
            try:
                self.when_idle()
            except Exception:
                logger.exception("work when idle failed")

    def _do_one(self) -> None:
        rows, item = self._items.popleft()
        self._pending_rows -= rows
        try:
            self.work(item)
        except Exception:  # ``work`` reports its own failures; this keeps the worker alive whatever happens
            logger.exception("work after an answer failed")

    async def drain(self) -> None:
        """Stop the worker and do every queued item (at shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._items:
            self._do_one()
        self._call_when_idle()
