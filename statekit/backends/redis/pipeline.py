"""Auto-pipelining: concurrent calls to one server coalesced into shared round trips.

:class:`AutoPipeline` coalesces concurrent calls: a call made while nothing is in flight
is sent at once, alone; calls made while others are in flight queue up and go together
in one round trip (one write of all their commands, their replies read in order). The
round trips themselves are made by a :data:`~statekit.backends.redis.connections.Send`
(:mod:`~statekit.backends.redis.connections`).
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from statekit.backends.redis.connections import Command, Send

# ``Command`` is re-exported: the backend imports it from here.
__all__ = ["AutoPipeline", "Command"]

# A queued call: its commands, the caller's future, and when it was queued.
_Call = tuple[Sequence[Command], "asyncio.Future[list[Any]]", float]


class AutoPipeline:
    """Coalesce concurrent calls into shared round trips made by ``send``.

    A failed round trip fails every call in it with the same error and is never sent
    again here: a caller whose command may be repeated safely (a read) sends it again
    itself. ``timeout`` bounds each round trip, and the time a call may wait in the
    queue before it is sent.
    """

    def __init__(
        self,
        send: Send,
        *,
        timeout: float | None,
        max_batch: int = 512,
        max_in_flight: int = 2,
    ) -> None:
        self._send_commands = send
        self._timeout = timeout
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: deque[_Call] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._starting = 0  # workers created that have not yet taken their first batch
        self._active = 0  # workers not yet finished
        self._in_flight = 0  # round trips under way, direct or batched
        self._closed = False

    async def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` together, in one round trip with the others in flight.

        Their replies in order, a command's error reply in its place; a lost connection
        or a timeout is raised.
        """
        if self._closed:
            raise RedisConnectionError("the pipeline is closed")
        if self._in_flight == 0 and not self._queue:
            return await self._direct(commands)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((commands, future, loop.time()))
        # A starting worker takes the whole queue; a busy one looks again when done.
        if self._starting == 0 and self._active < self._max_in_flight:
            self._starting += 1
            self._active += 1
            worker = loop.create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        # A cancelled caller cancels its future: a worker skips or ignores a done future.
        return await future

    async def _direct(self, commands: Sequence[Command]) -> list[Any]:
        """Nothing in flight: send at once, alone, rather than wait a loop iteration;
        the calls made meanwhile queue up behind it."""
        self._in_flight += 1
        try:
            return await self._bounded(self._send_commands(commands))
        finally:
            self._in_flight -= 1

    async def _bounded(self, awaitable: Awaitable[list[Any]]) -> list[Any]:
        """``awaitable`` within ``timeout``, else ``asyncio.TimeoutError``.

        One timer per round trip, so it is kept lean: ``asyncio.timeout`` costs about three
        times as much (its own object, rescheduling, state checks).
        """
        if self._timeout is None:
            return await awaitable
        if sys.version_info < (3, 11):  # pragma: no cover - no Task.uncancel before 3.11
            return await asyncio.wait_for(awaitable, self._timeout)
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(self._timeout, expire)
        try:
            return await awaitable
        except asyncio.CancelledError:
            # Ours, unless the task was also cancelled from outside meanwhile.
            if expired and task.uncancel() <= cancelling:
                raise asyncio.TimeoutError("no reply within the timeout") from None
            raise
        finally:
            timer.cancel()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def _work(self) -> None:
        # The counters change with no await between the queue check and the exit, so
        # a call queued at any point is either seen here or starts a new worker.
        self._starting -= 1
        try:
            while self._queue:
                batch = self._take()
                if batch:
                    self._in_flight += 1
                    try:
                        await self._send(batch)
                    finally:
                        self._in_flight -= 1
        finally:
            self._active -= 1

    def _take(self) -> list[_Call]:
        """Calls of up to ``max_batch`` commands in all; expired ones fail here, unsent."""
        batch: list[_Call] = []
        size = 0
        # Calls queued before this are past their timeout: they fail without being sent.
        expired = -1.0 if self._timeout is None else self._now() - self._timeout
        while self._queue and (not batch or size + len(self._queue[0][0]) <= self._max_batch):
            call = self._queue.popleft()
            future = call[1]
            if future.done():
                continue  # the caller was cancelled
            if call[2] <= expired:
                future.set_exception(asyncio.TimeoutError("queued past the timeout"))
                continue
            batch.append(call)
            size += len(call[0])
        return batch

    async def _send(self, batch: list[_Call]) -> None:
        commands = [command for call in batch for command in call[0]]
        try:
            replies = await self._bounded(self._send_commands(commands))
        except Exception as exc:  # the connection failed or timed out: the whole batch
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # the worker itself was cancelled (aclose)
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(RedisConnectionError("the pipeline was closed"))
            raise
        start = 0
        for call_commands, future, _ in batch:
            end = start + len(call_commands)
            if not future.done():
                future.set_result(replies[start:end])
            start = end

    async def aclose(self) -> None:
        """Stop the workers; callers still waiting get a connection error."""
        self._closed = True
        for worker in list(self._workers):
            worker.cancel()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
        while self._queue:
            future = self._queue.popleft()[1]
            if not future.done():
                future.set_exception(RedisConnectionError("the pipeline was closed"))
