"""What a backend's internals report to telemetry: batch sizes, queue waits, places in use.

A backend holds one :class:`Recorder` (its ``recorder`` attribute) and hands it to the
parts that see these figures (the Redis auto-pipeline, the FIFO gates in front of the
connection pools). It imports nothing of OpenTelemetry: until :mod:`statekit.telemetry`
attaches instruments to it, every report is one attribute check and nothing more, so the
hot paths keep their cost when telemetry is off or absent.

It also holds what the code under one store operation notes for that operation's span
(:class:`OperationNotes`): the refusals a write made, and the size of the coalesced batch
an operation went in (:meth:`Recorder.note_coalesced`).
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["OPERATION", "OperationNotes", "Recorder"]


class OperationNotes:
    """What one traced store operation learns on its way, read when its span ends.

    The telemetry wrapper makes one per call and makes it current (:data:`OPERATION`)
    for the call's task; without telemetry there is none, and noting costs one look-up.
    The defaults are the class's, so making one per call runs no ``__init__``.
    """

    #: Callers in the coalesced batch the operation went in (0: not coalesced).
    coalesced: int = 0
    #: The refusal reasons of a write, in order (``None`` until one is refused).
    refused: list[str] | None = None


#: The notes of the store operation under way in this task, if it is traced.
OPERATION: contextvars.ContextVar[OperationNotes | None] = contextvars.ContextVar(
    "statekit_operation", default=None
)


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

    @staticmethod
    def operation() -> OperationNotes | None:
        """The notes of the traced operation of the calling task (``None`` untraced).

        A coalescer whose batch runs in another task than its callers' takes each
        caller's notes here, in the caller's task, when it queues the call, and hands
        them to :meth:`note_coalesced` from the task that runs the batch.
        """
        return OPERATION.get()

    @staticmethod
    def note_coalesced(size: int, operation: OperationNotes | None = None) -> None:
        """Put ``statekit.coalesced.size = size`` on an operation's span.

        ``operation`` defaults to the calling task's (a caller noting, after its result
        came back, the batch it went in); else the notes taken by :meth:`operation`,
        noted before the caller's result is handed back (its span ends as it resumes).
        Untraced operations are not noted. The batch itself is :meth:`batch`'s, once.
        """
        notes = OPERATION.get() if operation is None else operation
        if notes is not None:
            notes.coalesced = size

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
