"""A storm of operations cancelled at random points, checked against a model as it runs.

``LANES`` lanes run at once, each owning a few keys of one shared scope, so the backend
always has concurrent calls (batched, pipelined, pooled) while each key's history stays
sequential: a lane starts an operation as a task, cancels it after a random pause (before
its first step, between steps, mid-I/O, or not at all; once or twice), waits until the
task has settled and only then starts its next operation.

The model keeps, per key, every state the key may be in: an acknowledged write or delete
leaves one, a cancelled one adds its outcome to the others (it may or may not have
happened). Every read that completes, and the final snapshot, must show one of them. A
cancelled write that took effect after the lane's next operation would break this.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from statekit import StateStore, StateUpdate
from statekit.testing import Identity

LANES = 40
KEYS_PER_LANE = 3
#: A cancelled call must have settled within this many seconds.
SETTLE_BOUND = 10.0

_OPERATIONS = ("set", "apply", "delete", "get", "snapshot", "list")
_WEIGHTS = (4, 2, 1, 2, 1, 1)


@dataclass
class StormReport:
    """What the storm did and every way the store disagreed with the model."""

    outcomes: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: key -> JSON texts it may hold (``None``: absent).
    possible: dict[str, set[str | None]] = field(default_factory=dict)

    def summary(self) -> str:
        counts = ", ".join(f"{name}={n}" for name, n in sorted(self.outcomes.items()))
        return f"{counts}; mismatches: {len(self.mismatches)}; errors: {len(self.errors)}"

    def check(self, what: str, key: str, value: Any) -> None:
        """``value`` (``None``: absent) must be one of the states ``key`` may be in."""
        text = None if value is None else json.dumps(value, sort_keys=True)
        if text not in self.possible[key]:
            self.mismatches.append(f"{what}: {key} = {text}, expected one of {self.possible[key]}")


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


async def _interrupt(task: asyncio.Task[Any], rng: random.Random, twice: bool) -> None:
    """Cancel ``task`` at a random point (or let it be), then once more if ``twice``."""
    pause = rng.random()
    if pause < 0.15:
        return  # not cancelled: runs to its end
    if pause < 0.3:
        task.cancel()  # before its first step
    elif pause < 0.7:
        for _ in range(rng.randrange(1, 8)):  # between its first steps
            await asyncio.sleep(0)
        task.cancel()
    else:
        await asyncio.sleep(rng.uniform(0, 0.004))  # mid-I/O, or done by then
        task.cancel()
    if twice:
        for _ in range(rng.randrange(0, 4)):
            await asyncio.sleep(0)
        task.cancel()


class Lane:
    """One lane's keys and its sequential operations on them."""

    def __init__(self, store: StateStore, ident: Identity, number: int, report: StormReport):
        self.store, self.ident, self.report = store, ident, report
        self.prefix = f"l{number:02d}:"
        self.keys = [f"{self.prefix}{n}" for n in range(KEYS_PER_LANE)]
        for key in self.keys:
            report.possible[key] = {None}

    def _written(self, key: str, text: str | None, acknowledged: bool) -> None:
        """A write or delete of ``key`` ended: acknowledged, or cancelled (or failed)."""
        if acknowledged:
            self.report.possible[key] = {text}
        else:
            self.report.possible[key].add(text)

    def operation(
        self, name: str, step: int, rng: random.Random
    ) -> tuple[Awaitable[Any], Callable[[Any, bool], None]]:
        """The call, and what its outcome (result, acknowledged?) means for the model."""
        ident, store = self.ident, self.store
        key, other = rng.sample(self.keys, 2)
        value = {"lane": self.prefix, "step": step}
        if name == "set":
            call: Awaitable[Any] = store.state_set(
                ident.scope_key(),
                key,
                value,
                ident.runner_id,
                ident.binding_identity,
                "conversation",
            )
            return call, lambda result, ok: self._set(result, ok, [key], _text(value))
        if name == "apply":
            updates = [StateUpdate("conversation", k, value) for k in (key, other)]
            call = store.apply_updates_from_event(
                ident.event, ident.binding, ident.descriptor, updates
            )
            return call, lambda result, ok: self._set(result, ok, [key, other], _text(value))
        if name == "delete":
            call = store.state_delete(ident.scope_key(), key)
            return call, lambda _, ok: self._written(key, None, ok)
        if name == "get":
            call = store.state_get(ident.scope_key(), key)
            return call, lambda got, ok: self.report.check("get", key, got) if ok else None
        if name == "snapshot":
            call = store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
            return (
                call,
                lambda got, ok: self.check_scope("snapshot", got["conversation"]) if ok else None,
            )
        call = store.state_list(ident.scope_key(), prefix=self.prefix)
        return call, lambda got, ok: self.check_listing(got) if ok else None

    def _set(self, result: Any, acknowledged: bool, keys: list[str], text: str) -> None:
        if acknowledged and result not in ((True, None), [(True, None)] * len(keys)):
            self.report.errors.append(f"write of {keys} refused: {result}")
        for key in keys:
            self._written(key, text, acknowledged)

    def check_scope(self, what: str, entries: dict[str, Any]) -> None:
        for key in self.keys:
            self.report.check(what, key, entries.get(key))

    def check_listing(self, listing: tuple[list[str], bool]) -> None:
        keys, has_more = listing
        if has_more or not set(keys) <= set(self.keys):
            self.report.mismatches.append(f"list: {listing} for {self.keys}")
        for key in self.keys:
            listed = key in keys
            if (listed and self.report.possible[key] == {None}) or (
                not listed and None not in self.report.possible[key]
            ):
                self.report.mismatches.append(
                    f"list: {key} listed={listed}, may be {self.report.possible[key]}"
                )

    async def run(self, steps: int, rng: random.Random, twice: bool) -> None:
        for step in range(steps):
            name = rng.choices(_OPERATIONS, _WEIGHTS)[0]
            call, outcome = self.operation(name, step, rng)
            task = asyncio.ensure_future(call)
            await _interrupt(task, rng, twice)
            done, _ = await asyncio.wait({task}, timeout=SETTLE_BOUND)
            if not done:
                self.report.errors.append(f"{name} still running {SETTLE_BOUND} s after cancel")
                return
            if task.cancelled():
                self.report.outcomes[f"{name} cancelled"] += 1
                outcome(None, False)
            elif (error := task.exception()) is not None:
                self.report.errors.append(f"{name}: {type(error).__name__}: {error}")
                outcome(None, False)
            else:
                self.report.outcomes[f"{name} done"] += 1
                outcome(task.result(), True)


async def storm(
    store: StateStore, ident: Identity, *, steps: int, seed: int, twice: bool = False
) -> StormReport:
    """Run every lane for ``steps`` operations; the model and what disagreed with it."""
    report = StormReport()
    lanes = [Lane(store, ident, number, report) for number in range(LANES)]
    await asyncio.gather(
        *(lane.run(steps, random.Random(seed * 1000 + n), twice) for n, lane in enumerate(lanes))
    )
    return report
