"""The background sweeper: ``sweep_expired`` every ``sweep_interval`` seconds, in the
event loop the store is used in, until the store is closed.

Correctness never depends on it (expired scopes are absent whether or not they have been
reclaimed): it only bounds how long expired storage lingers. A failed sweep is logged on
the ``statekit`` logger and tried again at the next interval; it never ends the task.

The task runs in a context of its own, empty: a sweep started by the loop belongs to no
caller, so its telemetry span is a root span, never a child of whichever request
happened to make the store's first call.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable

from statekit.backends.base import ExpiringBackend, SweepResult

_log = logging.getLogger("statekit")


class Sweeper:
    """One background task per store, started by :meth:`start` inside a running loop."""

    def __init__(self, backend: ExpiringBackend, interval: float) -> None:
        self.interval = interval
        #: What one run calls: the backend's sweep, or the same in a telemetry span and
        #: the sweep counters (:mod:`statekit.telemetry` replaces it, as it wraps the
        #: store's ``sweep_expired``).
        self.sweep: Callable[[], Awaitable[SweepResult]] = backend.sweep_expired
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the task is alive (not finished, its loop not closed)."""
        task = self._task
        return task is not None and not task.done() and not task.get_loop().is_closed()

    def start(self) -> None:
        """Start the task in the running loop, unless it runs already; outside a loop
        (a store built at import time) it waits for the first call made inside one."""
        if self.running:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        # The task copies the current context: run in an empty one, it starts with none
        # (``create_task(context=...)`` is Python 3.11's).
        empty = contextvars.Context()
        self._task = empty.run(loop.create_task, self._run(), name="statekit-expiry-sweeper")

    async def stop(self) -> None:
        """Cancel the task and wait for it to end (idempotent)."""
        task, self._task = self._task, None
        if task is None or task.done() or task.get_loop().is_closed():
            return
        task.cancel()
        if task.get_loop() is asyncio.get_running_loop():
            # wait() rather than awaiting the task: a cancellation of stop() itself
            # must still propagate.
            await asyncio.wait([task])

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                result = await self.sweep()
            except Exception as exc:
                _log.warning(
                    "expiry sweep failed, retrying in %g s: %s: %s",
                    self.interval,
                    type(exc).__name__,
                    exc,
                )
            else:
                if result.scopes:
                    _log.debug(
                        "expiry sweep reclaimed %d scopes (%d entries)",
                        result.scopes,
                        result.entries,
                    )
