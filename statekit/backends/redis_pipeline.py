"""Auto-pipelining: commands issued concurrently share one round trip.

One command per round trip leaves a busy event loop spending most of its time on
connection checkout, syscalls and wake-ups rather than on Redis. :class:`AutoPipeline`
queues the commands issued while earlier ones are in flight (or in the same event-loop
iteration) and sends them together as one non-transactional redis-py pipeline on one
connection; each caller gets exactly its own reply or its own error.

- A command error (a ``WRONGTYPE``, a script error) reaches only its own caller: the
  pipeline runs with ``raise_on_error=False`` and replies are handed out one by one.
- A connection error or a timeout fails every caller of that batch with that error.
- ``NOSCRIPT`` (a restarted or flushed server): the registered script is loaded and the
  affected ``EVALSHA`` commands are sent once more, in one more round trip.
- A batch holds at most ``max_batch`` commands, at most ``max_in_flight`` batches run at
  once (one connection each), and each round trip is bounded by ``timeout``. A command
  that has waited in the queue longer than ``timeout`` fails unsent, so no caller waits
  much more than twice ``timeout``. A cancelled caller's queued command is dropped and
  does not affect the others.
- The first command while nothing is in flight is sent at once, alone: a lone caller
  never waits for a loop iteration or a timer.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections import deque
from collections.abc import Awaitable, Iterable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

__all__ = ["AutoPipeline"]

# A queued command: its arguments, the caller's future, and when it was queued.
_Call = tuple[tuple[Any, ...], "asyncio.Future[Any]", float]


class AutoPipeline:
    """Coalesce concurrent commands on one standalone ``redis.asyncio.Redis`` client.

    ``scripts`` are the Lua sources sent by ``EVALSHA``, so ``NOSCRIPT`` can be repaired.
    """

    def __init__(
        self,
        client: Redis,
        *,
        timeout: float | None,
        scripts: Iterable[str] = (),
        max_batch: int = 512,
        max_in_flight: int = 2,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._scripts = {hashlib.sha1(s.encode()).hexdigest(): s for s in scripts}
        self._queue: deque[_Call] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._starting = 0  # workers created that have not yet taken their first batch
        self._active = 0  # workers not yet finished
        self._in_flight = 0  # round trips under way, direct or batched
        self._closed = False

    async def execute(self, *args: Any) -> Any:
        """Send one command with the others in flight; its reply, or its error raised."""
        if self._closed:
            raise RedisConnectionError("the pipeline is closed")
        if self._in_flight == 0 and not self._queue:
            return await self._direct(args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, future, loop.time()))
        # A starting worker takes the whole queue; a busy one looks again when done.
        if self._starting == 0 and self._active < self._max_in_flight:
            self._starting += 1
            self._active += 1
            worker = loop.create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        # A cancelled caller cancels its future: a worker skips or ignores a done future.
        return await future

    async def _direct(self, args: tuple[Any, ...]) -> Any:
        """Nothing in flight: send at once, alone, rather than wait a loop iteration;
        the calls made meanwhile queue up behind it."""
        self._in_flight += 1
        try:
            try:
                command: Awaitable[Any] = self._client.execute_command(*args)  # type: ignore[no-untyped-call]
                return await self._bounded(command)
            except NoScriptError:
                if args[0] != "EVALSHA" or args[1] not in self._scripts:
                    raise
                (reply,) = await self._reload_and_retry([args])
                if isinstance(reply, Exception):
                    raise reply from None
                return reply
        finally:
            self._in_flight -= 1

    async def _bounded(self, awaitable: Awaitable[Any]) -> Any:
        if self._timeout is None:
            return await awaitable
        if sys.version_info >= (3, 11):  # no extra task, unlike wait_for before 3.12
            async with asyncio.timeout(self._timeout):
                return await awaitable
        return await asyncio.wait_for(awaitable, self._timeout)

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
        """Up to ``max_batch`` queued calls; expired ones fail here, unsent."""
        batch: list[_Call] = []
        # Calls queued before this are past their timeout: they fail without being sent.
        expired = -1.0 if self._timeout is None else self._now() - self._timeout
        while self._queue and len(batch) < self._max_batch:
            call = self._queue.popleft()
            future = call[1]
            if future.done():
                continue  # the caller was cancelled
            if call[2] <= expired:
                future.set_exception(asyncio.TimeoutError("queued past the timeout"))
                continue
            batch.append(call)
        return batch

    async def _send(self, batch: list[_Call]) -> None:
        try:
            replies = await self._round_trip([args for args, _, _ in batch])
            retry = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if retry:
                again = await self._reload_and_retry([batch[i][0] for i in retry])
                for i, reply in zip(retry, again, strict=True):
                    replies[i] = reply
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
        for (_, future, _), reply in zip(batch, replies, strict=True):
            if not future.done():
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    async def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        replies: list[Any] = await self._bounded(pipe.execute(raise_on_error=False))
        return replies

    async def _reload_and_retry(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Load the scripts ``commands`` miss, then send them once more, in one trip."""
        shas = dict.fromkeys(str(args[1]) for args in commands)
        loads = [("SCRIPT LOAD", self._scripts[sha]) for sha in shas if sha in self._scripts]
        replies = await self._round_trip([*loads, *commands])
        return replies[len(loads) :]

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
