"""Running an operation to its end whatever becomes of its caller.

aiosqlite runs a statement to its end on its thread even when the caller is cancelled,
and SQLAlchemy's connection handling must not see a cancellation (cancelled again, the
graceful-close task it starts strands). So on SQLite a cancelled caller's statement
runs on, and the caller sees :class:`asyncio.CancelledError` only once it has ended:
its write has then landed or never will, and a write it makes next cannot be overtaken.

Two ways, one guarantee. :func:`to_the_end` runs the operation in a task of its own
(anything SQLAlchemy does, timeouts of its own included, stays in that task).
:class:`HoldBack` runs a coroutine that only awaits futures (aiosqlite's) in the
caller's own task, which costs no task and no extra turn of the loop: the fast path of
a statement on a connection kept idle (see :class:`.gateway.Gateway`). Both wait
through :class:`_Held`, which a cancellation of the caller cannot pass through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

_T = TypeVar("_T")


class _Held:
    """What a caller's task waits on to learn that ``future`` is done, which its
    cancellation cannot pass through.

    ``Task.cancel()`` cancels the future its task waits on; this one refuses
    (:meth:`cancel` returns ``False``), so the caller's task keeps the cancellation
    pending and raises it when it next resumes: when ``future`` is done, since it is on
    ``future`` that the caller's wake-up is registered (:meth:`add_done_callback`).
    The attributes are the ones asyncio's tasks use of whatever a coroutine yields.
    """

    __slots__ = ("_asyncio_future_blocking", "_future")

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self._future = future
        self._asyncio_future_blocking = True

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._future.get_loop()

    def add_done_callback(self, callback: Callable[..., object], *, context: Any = None) -> None:
        self._future.add_done_callback(callback, context=context)

    def remove_done_callback(self, callback: Callable[..., object]) -> int:
        return self._future.remove_done_callback(callback)

    def cancel(self, msg: Any = None) -> bool:
        return False

    def done(self) -> bool:
        return self._future.done()

    def __await__(self) -> Generator[Any, None, None]:
        yield self


async def until_done(future: asyncio.Future[Any]) -> bool:
    """Wait until ``future`` is done; whether the caller was cancelled meanwhile."""
    interrupted = False
    while not future.done():
        try:
            await _Held(future)
        except asyncio.CancelledError:
            interrupted = True  # the caller's, or the future's own outcome: both cancel
        except Exception:  # the future's outcome, read from it by its awaiter
            pass
    return interrupted


async def to_the_end(operation: Coroutine[Any, Any, _T]) -> _T:
    """Await ``operation`` in a task of its own that a cancellation of the caller does
    not reach, and hold the caller's cancellation back until the operation has ended
    (as long as the statement's, which ``timeout`` bounds)."""
    task = asyncio.ensure_future(operation)
    if await until_done(task):
        retrieve(task)
        raise asyncio.CancelledError
    return task.result()


class HoldBack:
    """Runs coroutines that only await futures in the caller's task, holding the
    caller's cancellation back until each has ended; :attr:`interrupted` says whether
    one came (the caller raises it when its work is done)."""

    __slots__ = ("interrupted",)

    def __init__(self) -> None:
        self.interrupted = False

    async def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Step ``coroutine`` as a task would, but wait for each future it awaits
        through :class:`_Held`. Its result or its error is the call's."""
        try:
            while True:
                try:
                    yielded = coroutine.send(None)
                except StopIteration as stop:
                    result: _T = stop.value
                    return result
                if getattr(yielded, "_asyncio_future_blocking", None) is None:
                    raise RuntimeError(f"HoldBack cannot wait for {yielded!r}")
                if await until_done(yielded):
                    self.interrupted = True
                yielded._asyncio_future_blocking = False
        finally:
            coroutine.close()  # a no-op once it has ended; else (GeneratorExit) ends it


async def shielded(operation: Awaitable[_T]) -> tuple[asyncio.Future[_T], bool]:
    """``operation`` awaited in a task that a cancellation of the caller does not reach;
    the task, and whether the caller was cancelled meanwhile (the caller decides what a
    cancellation then means: :func:`to_the_end`, PostgreSQL's connect)."""
    task = asyncio.ensure_future(operation)
    interrupted = False
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            interrupted = True
    return task, interrupted


def retrieve(task: asyncio.Future[Any]) -> None:
    """Mark ``task``'s error as retrieved: nobody awaits an operation whose caller was
    cancelled, and its error is not reported."""
    if not task.cancelled():
        task.exception()
