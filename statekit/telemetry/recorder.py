"""What a backend's internals report to telemetry: batch sizes, queue waits, places in use.

A backend holds one :class:`Recorder` (its ``recorder`` attribute) and hands it to the
parts that see these figures (the Redis auto-pipeline, the FIFO gates in front of the
connection pools). It imports nothing of OpenTelemetry: until :mod:`statekit.telemetry`
attaches instruments to it, every report is one attribute check and nothing more, so the
hot paths keep their cost when telemetry is off or absent.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["Recorder"]


class _Gated(Protocol):
    """A gate the recorder watches: its places and how many are taken."""

    size: int
    recorder: Recorder

    @property
    def in_use(self) -> int: ...


class Recorder:
    """The figures of one backend; :attr:`active` is ``False`` until telemetry attaches.

    ``batch(kind, size)`` records a batch that went to the server in one round trip:
    ``"pipeline"`` for the Redis auto-pipeline (``size`` callers), ``"coalesced"`` for a
    SQL coalescer. ``waited(seconds)`` records how long an operation queued at a gate.
    :meth:`connections` sums the places in use and free over the gates watched.
    """

    __slots__ = ("__weakref__", "_batch", "_gates", "_wait", "active")

    def __init__(self) -> None:
        self.active = False
        self._batch: Callable[[str, int], None] | None = None
        self._wait: Callable[[float], None] | None = None
        self._gates: weakref.WeakSet[_Gated] = weakref.WeakSet()

    def attach(self, batch: Callable[[str, int], None], wait: Callable[[float], None]) -> None:
        """Send the figures to ``batch`` and ``wait`` from now on."""
        self._batch, self._wait = batch, wait
        self.active = True

    def watch(self, gate: _Gated | None) -> None:
        """Count ``gate``'s places in :meth:`connections` and its waits (a backend calls
        it for each gate it creates; a gate replaced for a new event loop drops out)."""
        if gate is not None:
            gate.recorder = self
            self._gates.add(gate)

    def batch(self, kind: str, size: int) -> None:
        if self._batch is not None:
            self._batch(kind, size)

    def waited(self, seconds: float) -> None:
        if self._wait is not None:
            self._wait(seconds)

    def connections(self) -> tuple[int, int]:
        """``(used, idle)`` places over the gates watched."""
        gates = list(self._gates)
        used = sum(gate.in_use for gate in gates)
        return used, sum(gate.size for gate in gates) - used


#: What a gate reports to before its backend watches it: nothing.
NO_RECORDER = Recorder()
