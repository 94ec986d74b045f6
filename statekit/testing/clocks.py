"""Time for expiry tests: a fake clock for backends that keep time themselves, real time
for servers that keep their own, behind one interface the expiry contract is written on.

A backend with a ``clock`` attribute (memory, SQL) gets a :class:`FakeClock`: deadlines
are checked exactly (1 ms before, at, after) and nothing sleeps. A backend without one
(Redis) is tested in :class:`RealTime`, with short lifetimes: live while a deadline is
surely ahead, absent once it is surely past, never at the boundary itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

_T = TypeVar("_T")

#: Where a fake clock starts: a whole number of seconds, so deadlines land on exact
#: milliseconds in every backend's own representation.
FAKE_EPOCH = 1_750_000_000.0


class FakeClock:
    """A clock that moves only when told to; install it as a backend's ``clock``.

    It counts whole milliseconds, so every time it returns is one a backend storing
    milliseconds or microseconds holds exactly, and ``deadline - 0.001`` is one tick
    before a deadline.
    """

    def __init__(self, start: float = FAKE_EPOCH) -> None:
        self._ms = round(start * 1000)

    def __call__(self) -> float:
        return self._ms / 1000

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds`` (rounded to the millisecond, never backwards)."""
        self._ms += max(0, round(seconds * 1000))

    def set(self, when: float) -> None:
        """Jump to the POSIX time ``when`` (rounded to the millisecond)."""
        self._ms = round(when * 1000)


class TooLate(Exception):
    """Real time ran past a deadline before a check that needed it ahead had finished: the
    machine was too slow for this attempt, which says nothing about the backend."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """Where a write put a scope's deadline: between ``earliest`` (the write's start +
    ttl) and ``latest`` (its end + ttl). Both are the same on a fake clock."""

    earliest: float
    latest: float


class ExpiryTime(Protocol):
    """The time an expiry test runs in (see the module docstring)."""

    #: True when deadlines can be checked at their exact instant (a fake clock).
    exact: bool
    #: A scope lifetime, in seconds, that suits this time: long enough for the checks
    #: that run before a deadline, short enough not to make a test slow.
    ttl: float

    def now(self) -> float: ...

    async def deadline_of(self, write: Awaitable[_T], ttl: float) -> tuple[_T, Deadline]:
        """Run ``write`` and say where a ``ttl`` given with it put the deadline."""
        ...

    async def before(self, deadline: Deadline) -> None:
        """Go to 1 ms before ``deadline`` (fake); in real time, stay where we are."""
        ...

    def still_before(self, deadline: Deadline) -> None:
        """Raise :class:`TooLate` if real time has already reached ``deadline``: checks
        made since the last :meth:`before` may have run after it."""
        ...

    async def at(self, deadline: Deadline) -> None:
        """Go exactly to ``deadline`` (only where :attr:`exact`)."""
        ...

    async def past(self, deadline: Deadline) -> None:
        """Go to a time surely past ``deadline``."""
        ...

    async def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        ...

    def matches(self, when: datetime | None, deadline: Deadline) -> bool:
        """Whether ``when`` (a reported deadline) is ``deadline``, to the millisecond
        (fake) or within the write's duration (real)."""
        ...


class FakeTime:
    """:class:`ExpiryTime` on a :class:`FakeClock`: exact, instant."""

    exact = True
    ttl = 60.0

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def now(self) -> float:
        return self.clock()

    async def deadline_of(self, write: Awaitable[_T], ttl: float) -> tuple[_T, Deadline]:
        start = self.clock()
        result = await write
        return result, Deadline(start + ttl, start + ttl)

    async def before(self, deadline: Deadline) -> None:
        self.clock.set(deadline.earliest - 0.001)

    def still_before(self, deadline: Deadline) -> None:
        assert self.clock() < deadline.earliest, "the test itself moved past the deadline"

    async def at(self, deadline: Deadline) -> None:
        self.clock.set(deadline.earliest)

    async def past(self, deadline: Deadline) -> None:
        self.clock.set(deadline.latest + 1.0)

    async def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def matches(self, when: datetime | None, deadline: Deadline) -> bool:
        return when is not None and abs(when.timestamp() - deadline.earliest) < 0.001


class RealTime:
    """:class:`ExpiryTime` on the wall clock, for a server that keeps its own time."""

    exact = False
    ttl = 0.25
    #: How far past a deadline counts as surely past it (the server's rounding to
    #: milliseconds and its clock read at the write).
    margin = 0.05

    def now(self) -> float:
        return time.time()

    async def deadline_of(self, write: Awaitable[_T], ttl: float) -> tuple[_T, Deadline]:
        start = time.time()
        result = await write
        return result, Deadline(start + ttl, time.time() + ttl)

    async def before(self, deadline: Deadline) -> None:
        self.still_before(deadline)

    def still_before(self, deadline: Deadline) -> None:
        if time.time() >= deadline.earliest - 0.005:
            raise TooLate

    async def at(self, deadline: Deadline) -> None:
        raise AssertionError("real time cannot stop at a deadline: check `exact` first")

    async def past(self, deadline: Deadline) -> None:
        await self._until(deadline.latest + self.margin)

    async def wait(self, seconds: float) -> None:
        await self._until(time.time() + seconds)

    @staticmethod
    async def _until(when: float) -> None:
        # The event loop's clock is monotonic, the deadline is wall-clock time: a spare
        # millisecond covers their difference in rounding.
        left = when - time.time()
        if left > 0:
            await asyncio.sleep(left + 0.001)

    def matches(self, when: datetime | None, deadline: Deadline) -> bool:
        slack = 0.01  # the server's millisecond rounding
        return (
            when is not None
            and deadline.earliest - slack <= when.timestamp() <= deadline.latest + slack
        )


@contextlib.contextmanager
def expiry_time_of(backend: object) -> Iterator[ExpiryTime]:
    """The time to test ``backend``'s deadlines in: a :class:`FakeClock` installed as its
    ``clock`` for the block (the real one restored afterwards), or :class:`RealTime` for a
    backend without one."""
    if not hasattr(backend, "clock"):
        yield RealTime()
        return
    keeper: Any = backend
    real_clock = keeper.clock
    fake = FakeClock()
    keeper.clock = fake
    try:
        yield FakeTime(fake)
    finally:
        keeper.clock = real_clock


async def retry_too_late(attempt: Callable[[], Awaitable[None]], attempts: int = 5) -> None:
    """Run ``attempt`` until it finishes without :class:`TooLate` (each attempt must use
    fresh scopes); fail after ``attempts`` late ones, saying the machine was too slow."""
    for _ in range(attempts):
        try:
            await attempt()
            return
        except TooLate:
            continue
    raise AssertionError(
        f"{attempts} attempts in a row ran past a deadline of real time before their "
        "checks finished: the machine is too loaded for real-time expiry tests"
    )
