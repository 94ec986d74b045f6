"""The backend contract: plain strings in, plain strings out.

Below this line a backend stores ``value_json`` text under ``(scope_key, state_key)``
together with the scope's :class:`ScopeContext`; it knows nothing of events, policies,
aliases or JSON rules. Above it, :class:`statekit.StateStore` does all of that once, and
only ever hands a backend keys and values it has already validated:

* ``scope_key`` and ``state_key`` are non-empty ``str`` without control characters;
* ``value_json`` is strict JSON text of at most ``MAX_VALUE_JSON_BYTES`` UTF-8 bytes;
* ``limit`` is between 0 and 100; ``prefix`` is ``""`` (no prefix) or a valid key.

Every backend fault surfaces as a :class:`statekit.errors.StateBackendError` subclass.
The shared semantics are checked by the contract suite in :mod:`statekit.testing`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, Protocol


class Capability(str, enum.Enum):
    """Optional features a backend declares in ``capabilities``.

    The store refuses a call that needs an undeclared capability with
    :class:`~statekit.errors.UnsupportedCapabilityError`; the contract suite tests each
    capability only where it is declared.
    """

    #: Every entry carries a version (1 on creation, +1 on each write): enables
    #: :meth:`VersionedBackend.get_versioned` and ``set(..., expected_version=...)``.
    VERSIONS = "versions"
    #: Scopes can expire (see :class:`ExpiringBackend`): a write may give its scope a
    #: deadline, and from that deadline on the whole scope is absent on every read path.
    EXPIRY = "expiry"
    #: Scopes can be found, exported and erased by identity (access and erasure
    #: requests): see :class:`statekit.backends.identity.ErasingBackend`.
    ERASURE = "erasure"


#: The ``ttl`` meaning "this scope never expires": a write with it removes the scope's
#: deadline (a per-call override, ``state_set(..., expiry="never")``).
NEVER: float = math.inf


@dataclass(frozen=True, slots=True)
class ScopeContext:
    """Who a scope belongs to, stored with its entries so they can be exported, migrated
    and (later) erased by identity. ``runner_id``, ``binding_identity`` and ``scope`` are
    always set; the rest are ``None`` where the event did not carry them.

    The fields hashed into the scope key are the same for every write to a scope. The
    others (an actor scope's ``conversation_id``, say) differ between writers, so a backend
    may keep the context of each entry's first write (SQL, memory) or of the scope's first
    write (Redis, one context per scope): either way one write's context, never a mix."""

    runner_id: str
    binding_identity: str
    scope: str
    bot_id: str | None = None
    workspace_id: str | None = None
    conversation_id: str | None = None
    thread_id: str | None = None
    actor_type: str | None = None
    actor_id: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        # Not dataclasses.asdict: its deep copy made this a good part of a write's cost.
        return dict(zip(CONTEXT_FIELDS, _context_values(self), strict=True))

    @classmethod
    def from_mapping(
        cls, runner_id: str, binding_identity: str, scope: str, extra: Mapping[str, Any] | None
    ) -> ScopeContext:
        """Build from the State API's ``context`` dict; unknown keys are ignored."""
        if not extra:
            return cls(runner_id, binding_identity, scope)
        optional = {
            name: (None if extra.get(name) is None else str(extra[name]))
            for name in OPTIONAL_CONTEXT_FIELDS
        }
        return cls(runner_id=runner_id, binding_identity=binding_identity, scope=scope, **optional)


#: Every ScopeContext field, in order: the one spelling of the context's columns/keys.
CONTEXT_FIELDS = tuple(f.name for f in fields(ScopeContext))
#: The ScopeContext fields a caller may leave out, in their order.
OPTIONAL_CONTEXT_FIELDS = tuple(
    name for name in CONTEXT_FIELDS if name not in ("runner_id", "binding_identity", "scope")
)
_context_values = attrgetter(*CONTEXT_FIELDS)


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What :meth:`StateBackend.describe` reports: the same fields on every backend.

    ``layout`` is ``"ok"`` when the storage is ready to use (keys or table as statekit
    writes them), else what is wrong (``"missing table statekit_state"``): a store whose
    layout is not ok is not healthy. ``warnings`` name settings that endanger state while
    the layout is ok (a Redis eviction policy that may drop keys).
    """

    #: The engine: ``memory``, ``redis``, ``redis-cluster``, ``postgresql``, ``sqlite``...
    backend: str
    #: The server's own version text (``"n/a"`` for an in-process backend).
    server_version: str
    layout: str
    #: Where this store's data lives: a Redis key prefix, a SQL table's full name.
    namespace: str
    #: The backend's URL with any password masked, when it was built from one.
    url: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def layout_ok(self) -> bool:
        return self.layout == "ok"

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (``warnings`` as a list)."""
        return {
            "backend": self.backend,
            "server_version": self.server_version,
            "layout": self.layout,
            "namespace": self.namespace,
            "url": self.url,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True, slots=True, init=False)
class StateWrite:
    """One upsert, as handed to :meth:`StateBackend.set` and :meth:`StateBackend.set_many`.

    ``ttl`` is only set for backends declaring :attr:`Capability.EXPIRY` (see
    :meth:`ExpiringBackend.set`): seconds from now to the scope's new deadline,
    :data:`NEVER` to remove it, ``None`` to leave the deadline as it is.
    """

    scope_key: str
    state_key: str
    value_json: str
    context: ScopeContext
    ttl: float | None = None

    def __init__(
        self,
        scope_key: str,
        state_key: str,
        value_json: str,
        context: ScopeContext,
        ttl: float | None = None,
    ) -> None:
        # Every write builds one: the slots set directly cost half of what a frozen
        # dataclass's own __init__ does (an object.__setattr__ by name per field).
        _SET_SCOPE_KEY(self, scope_key)
        _SET_STATE_KEY(self, state_key)
        _SET_VALUE_JSON(self, value_json)
        _SET_CONTEXT(self, context)
        _SET_TTL(self, ttl)


_SET_SCOPE_KEY, _SET_STATE_KEY, _SET_VALUE_JSON, _SET_CONTEXT, _SET_TTL = (
    StateWrite.__dict__[name].__set__
    for name in ("scope_key", "state_key", "value_json", "context", "ttl")
)


@dataclass(frozen=True, slots=True)
class StateEntry:
    """One stored entry with everything a backend keeps about it (export, migration).

    ``created_at`` is kept by updates; ``updated_at`` moves on every write; both are
    timezone-aware UTC. ``version`` is 1 on creation and grows by one per write (0 from a
    backend without :attr:`Capability.VERSIONS`).
    """

    scope_key: str
    state_key: str
    value_json: str
    context: ScopeContext
    created_at: datetime
    updated_at: datetime
    version: int
    #: The scope's deadline (UTC) when it has one, from a backend with
    #: :attr:`Capability.EXPIRY`; ``None``: the scope does not expire. An export never
    #: holds an entry of an expired scope.
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What :meth:`ExpiringBackend.sweep_expired` reclaimed."""

    #: Expired scopes whose storage was removed.
    scopes: int = 0
    #: Entries removed with them.
    entries: int = 0


class StateBackend(Protocol):
    """What a storage engine implements to serve a :class:`statekit.StateStore`."""

    #: Optional features this backend supports (see :class:`Capability`).
    capabilities: frozenset[Capability]

    async def get(self, scope_key: str, state_key: str) -> str | None:
        """The stored JSON text, or ``None`` when the key is absent."""
        ...

    async def read_scopes(self, scope_keys: Sequence[str]) -> dict[str, dict[str, str]]:
        """Every entry of every given scope, in one round trip.

        Returns ``{scope_key: {state_key: value_json}}`` with an entry (possibly empty)
        for each requested scope key.
        """
        ...

    async def set(self, write: StateWrite, expected_version: int | None = None) -> int:
        """Atomically insert or update one entry and return its new version.

        Concurrent first writes of one key all succeed and one of them wins. An update
        keeps ``created_at`` and the context stored at creation (see :class:`ScopeContext`).
        ``expected_version`` is only passed to backends declaring
        :attr:`Capability.VERSIONS`: the write happens only if the stored version equals
        it (0: only if absent), else
        :class:`~statekit.errors.VersionConflictError` is raised and nothing is written.
        Backends without versions return 0.
        """
        ...

    async def set_many(self, writes: Sequence[StateWrite]) -> None:
        """Apply unconditional upserts together: in one round trip and one transaction
        where the engine has them, in order (a later write of the same key wins)."""
        ...

    async def delete(self, scope_key: str, state_key: str) -> bool:
        """Remove one entry; ``True`` if it existed."""
        ...

    async def list_keys(
        self, scope_key: str, prefix: str, limit: int, after: str | None
    ) -> tuple[list[str], bool]:
        """Up to ``limit`` keys of a scope in code-point order, with ``has_more``.

        Only keys starting with ``prefix`` literally (no wildcard characters) and sorting
        strictly after ``after`` (when given) count. ``has_more`` is exact: ``True`` iff a
        further matching key exists beyond the returned ones.
        """
        ...

    def iter_entries(self) -> AsyncIterator[StateEntry]:
        """Every stored entry with its context, in batches (bounded memory), any order."""
        ...

    async def clear(self) -> None:
        """Remove every entry this backend owns (its prefix or table), nothing else."""
        ...

    async def describe(self) -> BackendInfo:
        """A round trip to the server reporting what it is and whether the layout (schema
        or keys) is ready; raises a :class:`~statekit.errors.StateBackendError` when the
        server is unreachable. Never changes anything."""
        ...

    async def aclose(self) -> None:
        """Release connections; idempotent. Nothing may be called afterwards."""
        ...


class VersionedBackend(StateBackend, Protocol):
    """A backend that declares :attr:`Capability.VERSIONS`."""

    async def get_versioned(self, scope_key: str, state_key: str) -> tuple[str | None, int]:
        """The stored JSON text and its version, or ``(None, 0)`` when absent."""
        ...


class ExpiringBackend(StateBackend, Protocol):
    """A backend that declares :attr:`Capability.EXPIRY`.

    A scope has at most one deadline, shared by all its entries. The store passes ``ttl``
    (seconds, > 0) only to such a backend, on these calls:

    * :attr:`StateWrite.ttl` in ``set`` and ``set_many``: an accepted write
      moves its scope's deadline to now + ``ttl`` (:data:`NEVER`: removes it; ``None``:
      leaves it as it is), atomically with the write (a crash never leaves a scope half
      expiring). A rejected write (version conflict) moves nothing.
    * ``get(..., ttl=)``, ``get_versioned(..., ttl=)``, ``read_scopes(..., ttls=)``: a
      refresh on read. It moves the deadline of a live scope that has a finite deadline to
      now + ``ttl``; it never gives a deadline to a scope without one, and never creates
      or revives a scope.

    **Expired means absent**: from its deadline on (``now >= deadline``) a scope is absent
    on every read path (``get``, ``get_versioned``, ``read_scopes``, ``list_keys`` and its
    ``has_more``, ``iter_entries``, ``scope_deadline``) and for ``delete`` (``False``),
    whether or not its storage has been reclaimed. A write to an expired scope starts a
    new one: no old entry comes back, versions restart at 1 and ``expected_version=0``
    succeeds. One scope's deadline never touches another scope.

    A backend that keeps time itself (SQL, memory) takes the current time from an
    attribute ``clock`` (a callable returning POSIX seconds, ``time.time`` by default),
    which the contract suite replaces to test deadlines without sleeping. A server that
    keeps its own clock (Redis) has no ``clock``; the suite then uses real time.
    """

    async def set(self, write: StateWrite, expected_version: int | None = None) -> int:
        """As :meth:`StateBackend.set`, moving the scope's deadline by ``write.ttl`` as
        described above."""
        ...

    async def get(self, scope_key: str, state_key: str, ttl: float | None = None) -> str | None:
        """As :meth:`StateBackend.get`; a ``ttl`` refreshes the scope's deadline."""
        ...

    async def get_versioned(
        self, scope_key: str, state_key: str, ttl: float | None = None
    ) -> tuple[str | None, int]:
        """As :meth:`VersionedBackend.get_versioned`; a ``ttl`` refreshes the deadline."""
        ...

    async def read_scopes(
        self, scope_keys: Sequence[str], ttls: Mapping[str, float] | None = None
    ) -> dict[str, dict[str, str]]:
        """As :meth:`StateBackend.read_scopes`; ``ttls`` refreshes the named scopes."""
        ...

    async def scope_deadline(self, scope_key: str) -> datetime | None:
        """The deadline (UTC) of a live scope, or ``None`` when the scope has none, is
        absent or has expired."""
        ...

    async def sweep_expired(self, batch_size: int = 1000) -> SweepResult:
        """Reclaim the storage of expired scopes, at most ``batch_size`` entries per short
        transaction so writers are never held up long; returns what was removed. Reads
        never depend on it. A backend that reclaims by itself (Redis) returns zeros."""
        ...
