"""A bounded soak of many concurrent workers against one store, checked against a model.

Each worker owns its keys (``w{n}:...``) inside a handful of shared scopes, so every
scope sees concurrent writers while each key's expected value stays exact; shared
counters in every scope are incremented by all workers with conditional sets. At the end
the store's whole content must equal the model: no lost and no phantom entries.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from statekit import Capability, StateStore
from statekit.testing import Identity, new_identity
from statekit.testing.identities import try_increment


@dataclass
class SoakReport:
    operations: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)
    lost: int = 0
    phantom: int = 0
    wrong_value: int = 0
    entries: int = 0

    def count(self, op: str) -> None:
        self.operations[op] = self.operations.get(op, 0) + 1

    def summary(self) -> str:
        ops = ", ".join(f"{k}={v}" for k, v in sorted(self.operations.items()))
        return (
            f"ops: {ops}; conflicts retried: {self.conflicts}; entries checked: {self.entries}; "
            f"lost: {self.lost}; phantom: {self.phantom}; wrong: {self.wrong_value}; "
            f"errors: {len(self.errors)}"
        )


async def soak(
    store: StateStore, *, workers: int = 64, seconds: float = 5.0, seed: int = 0
) -> SoakReport:
    """Run ``workers`` concurrent workers for ``seconds`` and compare the store to the model."""
    report = SoakReport()
    versions = Capability.VERSIONS in store.backend.capabilities
    scopes = [new_identity() for _ in range(4)]
    model: dict[tuple[str, str], Any] = {}
    counters = {ident.scope_key(): 0 for ident in scopes}
    deadline = time.monotonic() + seconds

    async def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        mine: dict[tuple[str, str], Any] = {}
        while time.monotonic() < deadline:
            ident = rng.choice(scopes)
            scope_key = ident.scope_key()
            op = rng.choices(
                ["set", "snapshot", "get", "list", "delete", "increment"], [5, 2, 3, 2, 1, 1]
            )[0]
            report.count(op)
            if op == "set":
                key = f"w{n:02d}:{rng.randrange(8)}"
                value = {"worker": n, "nonce": rng.random(), "pad": "x" * rng.randrange(200)}
                ok = await store.apply_update_from_event(
                    ident.event, ident.binding, ident.descriptor, "conversation", key, value
                )
                assert ok == (True, None), ok
                mine[(scope_key, key)] = value
            elif op == "snapshot":
                snapshot = await store.build_snapshot_from_event(
                    ident.event, ident.binding, ident.descriptor
                )
                _check_own(report, n, scope_key, snapshot["conversation"], mine)
            elif op == "get":
                key = f"w{n:02d}:{rng.randrange(8)}"
                got = await store.state_get(scope_key, key)
                if got != mine.get((scope_key, key)):
                    report.errors.append(f"get {key}: {got!r} != {mine.get((scope_key, key))!r}")
            elif op == "list":
                keys, has_more = await store.state_list(scope_key, prefix=f"w{n:02d}:")
                expected = sorted(k for (s, k) in mine if s == scope_key)
                if keys != expected or has_more:
                    report.errors.append(f"list w{n:02d}: {keys} != {expected}")
            elif op == "delete":
                key = f"w{n:02d}:{rng.randrange(8)}"
                existed = await store.state_delete(scope_key, key)
                if existed != ((scope_key, key) in mine):
                    report.errors.append(f"delete {key}: returned {existed}")
                mine.pop((scope_key, key), None)
            elif op == "increment" and versions:
                await _increment(store, ident, report)
                counters[scope_key] += 1
        model.update(mine)

    await asyncio.gather(*(worker(n) for n in range(workers)))
    for scope_key, count in counters.items():
        if count:
            model[(scope_key, "counter")] = count
    await _compare(store, {i.scope_key() for i in scopes}, model, report)
    return report


async def _increment(store: StateStore, ident: Identity, report: SoakReport) -> None:
    while True:
        ok, _ = await try_increment(store, ident)
        if ok:
            return
        report.conflicts += 1


def _check_own(
    report: SoakReport,
    n: int,
    scope_key: str,
    seen: dict[str, Any],
    mine: dict[tuple[str, str], Any],
) -> None:
    own = {k: v for k, v in seen.items() if k.startswith(f"w{n:02d}:")}
    expected = {k: v for (s, k), v in mine.items() if s == scope_key}
    if own != expected:
        report.errors.append(f"snapshot w{n:02d}: {sorted(own)} != {sorted(expected)}")


async def _compare(
    store: StateStore,
    scope_keys: set[str],
    model: dict[tuple[str, str], Any],
    report: SoakReport,
) -> None:
    stored = {
        (e.scope_key, e.state_key): json.loads(e.value_json)
        async for e in store.export()
        if e.scope_key in scope_keys
    }
    report.entries = len(stored)
    report.lost = sum(1 for k in model if k not in stored)
    report.phantom = sum(1 for k in stored if k not in model)
    report.wrong_value = sum(1 for k, v in model.items() if k in stored and stored[k] != v)
