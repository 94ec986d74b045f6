"""Auto-pipelining: concurrent calls to one server coalesced into shared round trips.

:class:`AutoPipeline` coalesces concurrent calls: a call made while nothing is in flight
is sent at once, alone; calls made while others are in flight queue up and go together
in one round trip (one write of all their commands, their replies read in order). The
round trips themselves are made by a :data:`~statekit.backends.redis.connections.Send`
(:mod:`~statekit.backends.redis.connections`).

Under load the callers of a batch are woken in two halves when little else is in
flight, so that client and server work side by side (:meth:`AutoPipeline._hand_out`).

A caller cancelled while its call is still queued leaves at once: its commands are never
sent. One cancelled once its commands are on their way leaves when their round trip has
ended: whatever it sends next would otherwise go out on another connection and could
reach the server first (a write overtaken by the write it was meant to follow).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from statekit.backends.redis.connections import DEADLINE_PASSED, Command, Send
from statekit.telemetry.recorder import NO_RECORDER, Recorder

# ``Command`` is re-exported: the backend imports it from here.
__all__ = ["AutoPipeline", "Command"]


#: The fewest calls in a batch whose callers are woken in two halves (``_hand_out``).
_SPLIT_FROM = 8


class _Call:
    """A queued call: its commands, the caller's future, when it was queued, and once
    taken into a batch, the future of that batch's round trip (done when it has ended)."""

    __slots__ = ("commands", "future", "queued", "round_trip")

    def __init__(
        self, commands: Sequence[Command], future: asyncio.Future[list[Any]], queued: float
    ) -> None:
        self.commands = commands
        self.future = future
        self.queued = queued
        self.round_trip: asyncio.Future[None] | None = None


def _resolve(calls: list[_Call], replies: list[Any], start: int) -> int:
    """Give each of ``calls`` its replies, from ``replies[start]`` on; where they end."""
    for call in calls:
        end = start + len(call.commands)
        if not call.future.done():
            call.future.set_result(replies[start:end])
        start = end
    return start


async def _until_done(future: asyncio.Future[Any]) -> None:
    """Wait until ``future`` is done, whatever cancellations arrive meanwhile (the caller
    raises its own cancellation afterwards)."""
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait((future,))


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
        recorder: Recorder = NO_RECORDER,
    ) -> None:
        self._send_commands = send
        self._recorder = recorder
        self._timeout = timeout
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: deque[_Call] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._starting = 0  # workers created that have not yet taken their first batch
        self._active = 0  # workers not yet finished
        self._in_flight = 0  # round trips under way, direct or batched
        self._calls_in_flight = 0  # calls in those round trips
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
        call = _Call(commands, future, loop.time())
        self._queue.append(call)
        # A starting worker takes the whole queue; a busy one looks again when done.
        if self._starting == 0 and self._active < self._max_in_flight:
            self._starting += 1
            self._active += 1
            worker = loop.create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        try:
            # A cancelled caller cancels its future: a worker skips or ignores a done one.
            return await future
        except asyncio.CancelledError:
            if call.round_trip is not None:  # sent: wait until its round trip has ended
                await _until_done(call.round_trip)
            raise

    async def _direct(self, commands: Sequence[Command]) -> list[Any]:
        """Nothing in flight: send at once, alone, rather than wait a loop iteration;
        the calls made meanwhile queue up behind it."""
        self._in_flight += 1
        self._calls_in_flight += 1
        if self._recorder.active:
            self._recorder.batch("pipeline", 1)
        try:
            return await self._bounded(self._send_commands(commands))
        finally:
            self._in_flight -= 1
            self._calls_in_flight -= 1

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
            task.cancel(DEADLINE_PASSED)  # a timeout: round_trip holds nothing back

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
        while self._queue and (not batch or size + len(self._queue[0].commands) <= self._max_batch):
            call = self._queue.popleft()
            if call.future.done():
                continue  # the caller was cancelled
            if call.queued <= expired:
                call.future.set_exception(asyncio.TimeoutError("queued past the timeout"))
                continue
            batch.append(call)
            size += len(call.commands)
        return batch

    async def _send(self, batch: list[_Call]) -> None:
        commands = [command for call in batch for command in call.commands]
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for call in batch:
            call.round_trip = ended
        if self._recorder.active:
            self._recorder.batch("pipeline", len(batch))
        self._calls_in_flight += len(batch)
        try:
            replies = await self._bounded(self._send_commands(commands))
        except Exception as exc:  # the connection failed or timed out: the whole batch
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(exc)
            return
        except BaseException:  # the worker itself was cancelled (aclose)
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(RedisConnectionError("the pipeline was closed"))
            raise
        finally:
            self._calls_in_flight -= len(batch)
            ended.set_result(None)
        await self._hand_out(batch, replies)

    async def _hand_out(self, batch: list[_Call], replies: list[Any]) -> None:
        """Give each call of ``batch`` its replies.

        Woken all at once, the callers would all run before any of their next calls is
        sent: unless the round trips still under way hold as many calls as the batch,
        the server runs out of work meanwhile, then the client idles while the server
        works on all those calls (under load: one batch of nearly every caller and a
        straggler or two, taking turns). So then the first half of the callers are
        woken first, and their next calls sent before the others are woken: the server
        works on those while the client runs the rest."""
        if len(batch) < _SPLIT_FROM or self._calls_in_flight >= len(batch):
            _resolve(batch, replies, 0)
            return
        half = len(batch) // 2
        start = _resolve(batch[:half], replies, 0)
        try:
            await asyncio.sleep(0)  # the woken callers make their next calls
        finally:
            _resolve(batch[half:], replies, start)  # also when cancelled (aclose)

    async def aclose(self) -> None:
        """Stop the workers; callers still waiting get a connection error."""
        self._closed = True
        for worker in list(self._workers):
            worker.cancel()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
        while self._queue:
            future = self._queue.popleft().future
            if not future.done():
                future.set_exception(RedisConnectionError("the pipeline was closed"))
