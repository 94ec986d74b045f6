"""A first come, first served gate in front of a connection pool.

redis-py's ``BlockingConnectionPool`` (like SQLAlchemy's async pool) hands a returned
connection to whichever task asks next: a task that has just released one and asks
again gets it back before the waiters woken for it run, so with more tasks than
connections some waiters starve past their timeout while others are served again and
again. A gate of the pool's size in front of it admits that many operations at once and
queues the rest in arrival order: a released place goes straight to the oldest waiter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from statekit.errors import BackendTimeoutError
from statekit.telemetry.recorder import NO_RECORDER, Recorder

__all__ = ["FifoGate"]


class FifoGate:
    """Admit ``size`` holders at once, the others in arrival order, each waiting at most
    ``timeout`` seconds (``None``: no bound) before :class:`BackendTimeoutError` names
    the ``what`` that was not free."""

    def __init__(self, size: int, timeout: float | None, what: str) -> None:
        if size < 1:
            raise ValueError(f"a gate needs at least one place, not {size}")
        self.size = size
        self.timeout = timeout
        self._what = what
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()
        #: Where the time spent queued goes (see :class:`~statekit.telemetry.recorder.Recorder`).
        self.recorder: Recorder = NO_RECORDER

    @property
    def in_use(self) -> int:
        """Places taken now."""
        return self.size - self._free

    async def acquire(self) -> None:
        """Take a place, queueing behind every earlier waiter while none is free."""
        # Places are handed to waiters directly, so a free place means nobody waits.
        if self._free:
            self._free -= 1
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        queued = loop.time()
        try:
            if self.timeout is None:
                await waiter
            else:
                await asyncio.wait_for(waiter, self.timeout)
            if self.recorder.active:  # only a call that queued: the free path stays bare
                self.recorder.waited(loop.time() - queued)
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a place just as it gave up: pass it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, asyncio.TimeoutError):
                raise BackendTimeoutError(
                    f"no {self._what} free within {self.timeout:g} s ({self.size} in use)"
                ) from None
            raise

    def release(self) -> None:
        """Give a place back: to the oldest waiter if any, else to the next caller."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
