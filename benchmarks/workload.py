"""The data every contender works on, and the interface each contender implements.

A *contender* is one way of doing the storage job: statekit's ``StateStore``, a raw client
(redis-py, asyncpg) issuing the minimal commands, or the original SQL-only algorithm. Each
gets the same identities, keys and ~250-byte JSON values in storage of its own (its own
Redis prefix or table), so their figures differ only by how they do the work.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from statekit import (
    VALID_STATE_SCOPES,
    ActorContext,
    AgentBinding,
    AgentEventEnvelope,
    RunnerDescriptor,
    StatePolicy,
    StateStore,
    StateUpdate,
    SubjectContext,
    build_state_scope_keys,
)

#: Keys per scope in the snapshot workload (four scopes are read per snapshot).
SNAPSHOT_KEYS = 10
#: Keys the set and get workloads cycle through (more than the largest concurrency, so
#: concurrent writers rarely touch the same row).
RW_KEYS = 1024
#: Prefix of the keys a listing asks for, and how many keys it matches.
LIST_PREFIX = "match."
LIST_MATCHES = 50
#: How many entries a contender writes per call while filling a scope (untimed).
FILL_BATCH = 500


def _padded_value(size: int) -> dict[str, Any]:
    """A small JSON object shaped like real runner state, ``size`` bytes as compact JSON."""
    value: dict[str, Any] = {
        "lang": "fr",
        "turns": 12,
        "tags": ["support", "billing", "priority"],
        "summary": "",
    }
    compact = len(json.dumps(value, separators=(",", ":")))
    value["summary"] = "x" * max(0, size - compact)
    return value


#: The value every write stores: 250 bytes of compact JSON.
VALUE = _padded_value(250)


@dataclass(frozen=True)
class Identity:
    """One event's identity: what statekit's event API takes, and the four scope keys
    derived from it, computed once for the contenders that address scopes directly."""

    event: AgentEventEnvelope
    binding: AgentBinding
    runner: RunnerDescriptor
    scope_keys: Mapping[str, str]


def make_identity(runner_id: str, tag: str) -> Identity:
    """An identity with all four scopes enabled and present; ``tag`` keeps it apart."""
    event = AgentEventEnvelope(
        bot_id="bench-bot",
        workspace_id="bench-workspace",
        conversation_id=f"{tag}-conversation",
        actor=ActorContext(actor_id=f"{tag}-actor"),
        subject=SubjectContext(subject_type="ticket", subject_id=f"{tag}-subject"),
    )
    binding = AgentBinding(
        binding_id="bench-binding", state_policy=StatePolicy(state_scopes=list(VALID_STATE_SCOPES))
    )
    runner = RunnerDescriptor(id=runner_id)
    return Identity(event, binding, runner, build_state_scope_keys(event, binding, runner))


def new_runner_id() -> str:
    """A runner id no other run uses, so concurrent runs never share a scope."""
    return f"statekit-bench-{uuid.uuid4().hex[:12]}"


def rw_key(i: int) -> str:
    return f"key.{i % RW_KEYS:04d}"


def list_entries(size: int) -> dict[str, Any]:
    """``size`` keys of which ``min(LIST_MATCHES, size // 2)`` start with LIST_PREFIX."""
    matches = min(LIST_MATCHES, size // 2)
    keys = [f"{LIST_PREFIX}{j:05d}" for j in range(matches)]
    keys += [f"other.{j:05d}" for j in range(size - matches)]
    return dict.fromkeys(keys, VALUE)


#: Families of baselines, the columns of each backend's summary table.
RAW_DRIVER = "raw driver"
ORIGINAL = "original"
LANGGRAPH = "LangGraph's store"
KEY_VALUE = "py-key-value"
FAMILIES = (LANGGRAPH, KEY_VALUE, RAW_DRIVER)


class Contender(Protocol):
    """One way of storing the workload. Timed calls: set, get, snapshot, list.

    A baseline may say which family it belongs to (``family``, one of the names above,
    with a short ``tag`` such as ``"asyncpg"`` or ``"WAL"``) and which operations its API
    cannot do (``unavailable``: operation -> why): the suite records those as not
    available instead of timing them, and never calls them.
    """

    label: str

    async def fill(self, who: Identity, scope: str, entries: Mapping[str, Any]) -> None:
        """Write ``entries`` into one scope, as fast as the contender can (untimed)."""

    async def set(self, who: Identity, scope: str, key: str, value: Any) -> None: ...

    async def get(self, who: Identity, scope: str, key: str) -> Any: ...

    async def snapshot(self, who: Identity) -> dict[str, dict[str, Any]]:
        """Every scope's decoded values, keyed by scope name."""

    async def list(self, who: Identity, scope: str, prefix: str) -> tuple[list[str], bool]:
        """The first 100 keys with ``prefix`` in code-point order, and whether more follow."""

    async def aclose(self) -> None: ...


def unavailable_reason(contender: Contender, op: str) -> str | None:
    """Why ``contender`` cannot do ``op``, or None when it can."""
    reasons: Mapping[str, str] = getattr(contender, "unavailable", {})
    return reasons.get(op)


def family_of(contender: Contender) -> tuple[str, str]:
    """``(family, tag)`` of a baseline; a contender without them is its own family."""
    family = str(getattr(contender, "family", contender.label))
    return family, str(getattr(contender, "tag", contender.label))


class SeedStore(Protocol):
    """The seed's event API and State API: what ``StateStore`` keeps and the original
    store (``benchmarks/original.py``) has."""

    async def apply_update_from_event(
        self, event: Any, binding: Any, descriptor: Any, scope: str, key: str, value: Any, /
    ) -> tuple[bool, str | None]: ...

    async def state_get(self, scope_key: str, state_key: str, /) -> Any: ...

    async def build_snapshot_from_event(
        self, event: Any, binding: Any, descriptor: Any, /
    ) -> dict[str, dict[str, Any]]: ...

    async def state_list(self, scope_key: str, prefix: str | None, /) -> tuple[list[str], bool]: ...


StoreT = TypeVar("StoreT", bound=SeedStore)


class SeedAPIContender(Generic[StoreT]):
    """A contender that calls a store as a host calls the seed's API: the event API for
    writes and snapshots, the State API (scope keys) for reads and listings."""

    label: str

    def __init__(self, store: StoreT) -> None:
        self.store = store

    async def set(self, who: Identity, scope: str, key: str, value: Any) -> None:
        ok, error = await self.store.apply_update_from_event(
            who.event, who.binding, who.runner, scope, key, value
        )
        if not ok:
            raise RuntimeError(f"set refused: {error}")

    async def get(self, who: Identity, scope: str, key: str) -> Any:
        return await self.store.state_get(who.scope_keys[scope], key)

    async def snapshot(self, who: Identity) -> dict[str, dict[str, Any]]:
        return await self.store.build_snapshot_from_event(who.event, who.binding, who.runner)

    async def list(self, who: Identity, scope: str, prefix: str) -> tuple[list[str], bool]:
        return await self.store.state_list(who.scope_keys[scope], prefix)


class StatekitContender(SeedAPIContender[StateStore]):
    """statekit's public API, as a host calls it."""

    def __init__(self, store: StateStore, label: str = "statekit") -> None:
        super().__init__(store)
        self.label = label

    async def fill(self, who: Identity, scope: str, entries: Mapping[str, Any]) -> None:
        items = list(entries.items())
        for start in range(0, len(items), FILL_BATCH):
            updates = [StateUpdate(scope, k, v) for k, v in items[start : start + FILL_BATCH]]
            results = await self.store.apply_updates_from_event(
                who.event, who.binding, who.runner, updates
            )
            if not all(ok for ok, _ in results):
                raise RuntimeError(f"fill refused: {results}")

    async def aclose(self) -> None:
        await self.store.clear_all()
        await self.store.aclose()
