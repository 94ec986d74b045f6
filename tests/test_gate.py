"""The FIFO gate in front of connection pools (SQL, and Redis without auto-pipelining)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from statekit.backends.gate import FifoGate
from statekit.errors import BackendTimeoutError


@contextlib.asynccontextmanager
async def one_place(gate: FifoGate) -> AsyncIterator[None]:
    """One place of ``gate`` for the block, as the backends take it."""
    await gate.acquire()
    try:
        yield
    finally:
        gate.release()


async def test_waiters_are_served_in_arrival_order() -> None:
    gate = FifoGate(1, None, "connection")
    served: list[str] = []

    async def use(name: str) -> None:
        async with one_place(gate):
            served.append(name)
            await asyncio.sleep(0)

    await gate.acquire()
    waiters = [asyncio.create_task(use(f"w{i}")) for i in range(5)]
    await asyncio.sleep(0)  # every waiter queued, in order
    gate.release()
    # A caller arriving as the place is released still queues behind the waiters.
    late = asyncio.create_task(use("late"))
    await asyncio.gather(*waiters, late)
    assert served == ["w0", "w1", "w2", "w3", "w4", "late"]


async def test_a_caller_that_just_released_queues_behind_the_waiters() -> None:
    """The starvation a plain pool allows: a task releasing and asking again at once."""
    gate = FifoGate(1, None, "connection")
    served: list[str] = []
    queued = asyncio.Event()

    async def greedy() -> None:
        for _ in range(3):
            async with one_place(gate):
                served.append("greedy")
                await queued.wait()

    async def once(name: str) -> None:
        async with one_place(gate):
            served.append(name)

    first = asyncio.create_task(greedy())
    await asyncio.sleep(0)  # greedy holds the place
    others = [asyncio.create_task(once(name)) for name in ("a", "b")]
    await asyncio.sleep(0)  # a and b wait for it
    queued.set()
    await asyncio.gather(first, *others)
    assert served == ["greedy", "a", "b", "greedy", "greedy"]


async def test_at_most_size_holders_at_once() -> None:
    gate = FifoGate(3, None, "connection")
    holding = 0
    most = 0

    async def use() -> None:
        nonlocal holding, most
        async with one_place(gate):
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0)
            holding -= 1

    await asyncio.gather(*(use() for _ in range(20)))
    assert most == 3


async def test_waiting_is_bounded_and_a_timed_out_waiter_leaves_no_trace() -> None:
    gate = FifoGate(1, 0.05, "test connection")
    await gate.acquire()
    with pytest.raises(BackendTimeoutError, match=r"no test connection free within 0.05 s \(1 in"):
        await gate.acquire()
    gate.release()
    # The place is free again, and the timed-out waiter does not hold up the next caller.
    await asyncio.wait_for(gate.acquire(), 1)
    gate.release()


async def held_with_two_waiters() -> tuple[FifoGate, asyncio.Task[None], asyncio.Task[None]]:
    """A gate of one place, held, and two callers queued for it in order."""
    gate = FifoGate(1, None, "connection")
    await gate.acquire()
    first = asyncio.create_task(gate.acquire())
    second = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    return gate, first, second


async def test_a_cancelled_waiter_gives_up_its_turn() -> None:
    gate, cancelled, waiting = await held_with_two_waiters()
    cancelled.cancel()
    await asyncio.sleep(0)
    gate.release()
    await asyncio.wait_for(waiting, 1)  # the place skipped the cancelled waiter
    gate.release()
    await asyncio.wait_for(gate.acquire(), 1)  # and nothing leaked


async def test_a_place_handed_over_as_its_waiter_gives_up_is_passed_on() -> None:
    gate, first, second = await held_with_two_waiters()
    gate.release()  # handed to first ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)


def test_a_gate_needs_a_place() -> None:
    with pytest.raises(ValueError, match="at least one place"):
        FifoGate(0, None, "connection")
