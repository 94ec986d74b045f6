"""Coalescing: calls made while others are in flight go to the server together.

The SQL counterpart of Redis's auto-pipelining. A call made while none of the backend's
coalesced calls is in flight is sent at once, alone, exactly as without coalescing. A
call made while others are in flight joins the queue of its statement; one sender per
statement sends what has queued as one batch (at most ``limit`` calls, see
:mod:`.batching`) in one turn of the gateway, and the next batch once that one has ended,
so a batch grows with the load: 64 sets in flight cost a handful of commits, not 64.

What each caller sees is what it would have seen alone:

- its own rows, or its own error: a batch that fails for a reason other than the
  server's availability (a row the database refuses) was rolled back whole, and its
  calls are run again one by one, in call order, each with its own outcome;
- a lost connection fails every call of the batch with
  :class:`~statekit.errors.BackendUnavailableError` (a write's outcome is then unknown: it
  is never sent again), a timed-out batch with
  :class:`~statekit.errors.BackendTimeoutError`; reads are re-sent once, as alone;
- a call waits in the queue at most ``timeout`` (then ``BackendTimeoutError``);
- a caller cancelled while its call is queued leaves the queue, and nothing is sent for
  it; once sent, the batch goes on for the others and the caller's cancellation is held
  back until the batch has ended (its write has landed or never will, as alone on
  SQLite); no caller's cancellation reaches another's call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from statekit.backends.sql import batching, driver
from statekit.backends.sql.gateway import Gateway
from statekit.backends.sql.holdback import until_done
from statekit.errors import BackendTimeoutError, BackendUnavailableError, StoreClosedError
from statekit.telemetry.recorder import Recorder

#: The most calls one batch carries.
BATCH_LIMIT = 256


class _Call:
    __slots__ = ("arguments", "batch", "future", "queued_at", "size")

    def __init__(
        self, arguments: Sequence[Any], future: asyncio.Future[Any], queued_at: float
    ) -> None:
        self.arguments = arguments
        self.future = future
        self.queued_at = queued_at
        #: Set when the call is sent: done once its batch has ended; and its size.
        self.batch: asyncio.Future[None] | None = None
        self.size = 0


class _Queue:
    """The calls of one statement waiting to be sent (oldest first), whether a sender
    runs, and the one timer that fails the oldest call once it has waited ``timeout``."""

    __slots__ = ("calls", "read", "sending", "timer", "what")

    def __init__(self, what: str, read: bool) -> None:
        self.calls: deque[_Call] = deque()
        self.sending = False
        self.timer: asyncio.TimerHandle | None = None
        self.what = what
        self.read = read


class Coalescer:
    """Sends concurrent calls of one statement as batches (see the module's docstring).

    ``on_batch(size)`` is told the size of every batch sent from the queue.
    """

    def __init__(
        self,
        gateway: Gateway,
        *,
        postgres: bool,
        timeout: float,
        on_batch: Callable[[int], None],
        limit: int = BATCH_LIMIT,
    ) -> None:
        self._gateway = gateway
        self._postgres = postgres
        self._timeout = timeout
        self._on_batch = on_batch
        self._limit = limit
        self._plans: dict[str, batching.Plan | None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[str, _Queue] = {}
        self._senders: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        gateway.backlog = self.queued

    def queued(self) -> bool:
        """Whether calls wait in a queue (the gateway keeps a connection for them)."""
        return any(queue.calls for queue in self._queues.values())

    async def run(self, sql: str, arguments: Sequence[Any], what: str, *, read: bool) -> Any:
        """``sql`` with ``arguments``, alone or in a batch; its rows (one coroutine a
        call: this is the hot path of every coalesced call)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new event loop (see .gateway): nothing of the old one's can be awaited.
            self._loop, self._queues, self._senders, self._in_flight = loop, {}, set(), 0
        if not self._in_flight or not self._can_batch(sql):
            self._in_flight += 1
            try:
                return await self._gateway.run(driver.run, sql, arguments, what, read=read)
            finally:
                self._in_flight -= 1
        queue, call = self._enqueue(loop, sql, arguments, what, read)
        self._in_flight += 1
        try:
            return await call.future
        except asyncio.CancelledError:
            if call.batch is None:  # still queued: nothing will be sent for it
                _leave(queue, call)
                raise
            await until_done(call.batch)  # the caller's cancellation is raised below
            raise
        finally:
            self._in_flight -= 1
            if call.size:
                # On the caller's span (telemetry), in the caller's own task.
                Recorder.note_coalesced(call.size)

    def _enqueue(
        self,
        loop: asyncio.AbstractEventLoop,
        sql: str,
        arguments: Sequence[Any],
        what: str,
        read: bool,
    ) -> tuple[_Queue, _Call]:
        """Queue a call, starting the statement's sender if none runs."""
        queue = self._queues.get(sql)
        if queue is None:
            queue = self._queues[sql] = _Queue(what, read)
        call = _Call(arguments, loop.create_future(), loop.time())
        queue.calls.append(call)
        if queue.timer is None:
            queue.timer = loop.call_at(call.queued_at + self._timeout, self._expire, queue)
        if not queue.sending:
            queue.sending = True
            sender = loop.create_task(self._send(sql, queue))
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return queue, call

    def _can_batch(self, sql: str) -> bool:
        if not self._postgres:
            return True
        if sql not in self._plans:
            self._plans[sql] = batching.plan(sql)
        return self._plans[sql] is not None

    async def _send(self, sql: str, queue: _Queue) -> None:
        """Send the queue's calls, a batch at a time, until none is left."""
        try:
            while queue.calls:
                batch = self._take(queue)
                if batch:
                    await self._send_batch(sql, queue, batch)
                    # Let the callers just answered make their next calls first: they
                    # join the next batch instead of trailing it one by one.
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            # The loop is shutting down: the callers still waiting are cancelled too.
            while queue.calls:
                queue.calls.popleft().future.cancel()
            raise
        finally:
            queue.sending = False

    def _take(self, queue: _Queue) -> list[_Call]:
        assert self._loop is not None
        done = self._loop.create_future()
        batch: list[_Call] = []
        while queue.calls and len(batch) < self._limit:
            call = queue.calls.popleft()
            if call.future.done():  # expired in the queue
                continue
            call.batch = done
            batch.append(call)
        for call in batch:
            call.size = len(batch)
        if not queue.calls and queue.timer is not None:
            queue.timer.cancel()
            queue.timer = None
        return batch

    def _expire(self, queue: _Queue) -> None:
        """Fail the calls that have waited ``timeout`` in the queue (they are never
        sent), then wait for the next oldest."""
        assert self._loop is not None
        queue.timer = None
        now = self._loop.time()
        while queue.calls and queue.calls[0].queued_at + self._timeout <= now:
            _fail(
                queue.calls.popleft(),
                BackendTimeoutError(
                    f"{queue.what}: waited more than {self._timeout:g}s in the queue"
                ),
            )
        if queue.calls:
            deadline = queue.calls[0].queued_at + self._timeout
            queue.timer = self._loop.call_at(deadline, self._expire, queue)

    async def _send_batch(self, sql: str, queue: _Queue, batch: list[_Call]) -> None:
        what, read = queue.what, queue.read
        self._on_batch(len(batch))
        try:
            if len(batch) == 1:
                outcome = [
                    await self._gateway.run(driver.run, sql, batch[0].arguments, what, read=read)
                ]
            else:
                outcome = await self._run_batch(sql, batch, what, read)
            for call, rows in zip(batch, outcome, strict=True):
                _settle(call, rows)
        except (BackendUnavailableError, StoreClosedError) as error:
            for call in batch:
                _fail(call, error)
        except asyncio.CancelledError:
            for call in batch:
                call.future.cancel()
            raise
        except Exception as error:
            if len(batch) == 1:
                _fail(batch[0], error)
            else:
                # Rolled back whole: each call again on its own, in call order.
                await self._one_by_one(sql, batch, what, read)
        finally:
            assert batch[0].batch is not None
            batch[0].batch.set_result(None)

    async def _run_batch(self, sql: str, batch: list[_Call], what: str, read: bool) -> Any:
        calls = [call.arguments for call in batch]
        if not self._postgres:
            return await self._gateway.run(
                batching.run_sqlite, sql, (not read, calls), what, read=read
            )
        plan = self._plans[sql]
        assert plan is not None  # see _can_batch
        return await self._gateway.run(batching.run_postgres, sql, (plan, calls), what, read=read)

    async def _one_by_one(self, sql: str, batch: list[_Call], what: str, read: bool) -> None:
        for call in batch:
            try:
                rows = await self._gateway.run(driver.run, sql, call.arguments, what, read=read)
            except Exception as error:
                _fail(call, error)
            else:
                _settle(call, rows)

    async def aclose(self) -> None:
        """Wait for the senders under way (the gateway, closed first, ends them)."""
        if self._senders:
            await asyncio.wait(set(self._senders))


def _settle(call: _Call, rows: Any) -> None:
    if not call.future.done():
        call.future.set_result(rows)


def _fail(call: _Call, error: BaseException) -> None:
    if not call.future.done():
        call.future.set_exception(error)


def _leave(queue: _Queue, call: _Call) -> None:
    with contextlib.suppress(ValueError):
        queue.calls.remove(call)
