"""Work to do on an event loop while it shuts down, before it closes.

asyncpg's connections belong to the loop that opened them: once that loop is closed they
can neither be used nor closed. ``asyncio.run()`` and ``asyncio.Runner`` (pytest-asyncio
too) close every open async generator of the loop (``loop.shutdown_asyncgens()``) after
cancelling its tasks and before closing it; a generator started on the loop whose
``finally`` closes the loop's connections therefore runs at the last moment they can be
closed. A loop closed by hand skips this: its connections are then dropped unclosed
(see :class:`.gateway.Gateway`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import Any


def _step(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run ``coroutine`` up to its first suspension, synchronously (it has none here)."""
    with contextlib.suppress(StopIteration):
        coroutine.send(None)


class LoopEnd:
    """Awaits ``release()`` on the running loop when that loop shuts down, unless
    :meth:`cancel` was called first. Build it inside a coroutine on that loop."""

    def __init__(self, release: Callable[[], Awaitable[None]]) -> None:
        self._release: Callable[[], Awaitable[None]] | None = release
        self._generator = self._wait()
        # The first step registers the generator with the running loop (its asyncgen
        # hooks) and stops at the ``yield``; the loop holds it weakly, this object strongly.
        _step(self._generator.__anext__())

    async def _wait(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            release, self._release = self._release, None
            if release is not None:
                await release()

    def cancel(self) -> None:
        """Forget ``release`` and close the generator now, without awaiting anything."""
        self._release = None
        _step(self._generator.aclose())
