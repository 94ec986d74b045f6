"""Worker processes for the multi-process attacks, and the plans they share with the tests.

Run as ``python attack_workers.py MODE``; a worker then runs one job per JSON config line
on stdin until stdin closes (one process serves several jobs: starting an interpreter
costs more than a job). For each, it opens its own store with
``statekit.connect(config["url"], **config["options"])``, prints ``ready``, waits for a
``go`` line (so that every worker starts at once), works, closes the store and prints
its result:

- ``increment``: ``count`` read-modify-write increments of one key with
  ``state_get_versioned`` + ``state_set(..., expected_version=...)``, retrying on
  conflict; prints ``done <conflicts>``.
- ``write``: the writes of :func:`planned_write` in order, printing ``ack <n>`` (flushed)
  once write ``n`` has returned, until killed or ``count`` writes are done.

Every other outcome (a refusal, a backend error, the ``deadline`` passing) prints
``error ...`` and exits with status 1, so the test fails instead of waiting.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import statekit
import statekit.backends.sql  # imported before the first job, as the interpreter starts
from statekit import StateStore, StateUpdate
from statekit.testing import Identity
from statekit.testing.identities import new_identity, try_increment

#: Keys each writer cycles through, so that later writes overwrite earlier ones.
WRITE_SLOTS = 12


def planned_write(writer: str, number: int) -> dict[str, Any]:
    """What write ``number`` (from 1) of ``writer`` stores: one key, or every third write
    a batch of two keys (applied together or not at all)."""
    slot = number % WRITE_SLOTS
    value = {"writer": writer, "n": number}
    if number % 3 == 0:
        return {f"{writer}:{slot}": value, f"{writer}:{(slot + 1) % WRITE_SLOTS}": value}
    return {f"{writer}:{slot}": value}


def state_after(writer: str, writes: int) -> dict[str, Any]:
    """The writer's keys once its first ``writes`` planned writes are applied."""
    state: dict[str, Any] = {}
    for number in range(1, writes + 1):
        state.update(planned_write(writer, number))
    return state


async def _increment(store: StateStore, ident: Identity, config: dict[str, Any]) -> str:
    conflicts = done = 0
    while done < config["count"]:
        ok, error = await try_increment(store, ident, config["key"])
        if ok:
            done += 1
        elif error is not None and error.startswith("Version conflict"):
            conflicts += 1
        else:
            raise RuntimeError(f"state_set refused: {error}")
    return f"done {conflicts}"


async def _write(store: StateStore, ident: Identity, config: dict[str, Any]) -> str:
    writer = config["writer"]
    for number in range(1, config["count"] + 1):
        updates = [
            StateUpdate("conversation", key, value)
            for key, value in planned_write(writer, number).items()
        ]
        results = await store.apply_updates_from_event(
            ident.event, ident.binding, ident.descriptor, updates
        )
        if results != [(True, None)] * len(updates):
            raise RuntimeError(f"write {number} refused: {results}")
        print(f"ack {number}", flush=True)
    return "done 0"


async def _read_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def _serve(mode: str) -> None:
    """Run jobs until stdin closes: each a config line, then ``go`` once ready."""
    work = {"increment": _increment, "write": _write}[mode]
    while line := await _read_line():
        config = json.loads(line)
        ident = new_identity(tag=config["tag"])
        async with statekit.connect(config["url"], **config["options"]) as store:
            await store.describe()  # connected before the start
            print("ready", flush=True)
            line = await _read_line()
            if line.strip() != "go":
                raise RuntimeError(f"expected 'go', got {line!r}")
            remaining = config["deadline"] - time.time()
            result = await asyncio.wait_for(work(store, ident, config), max(remaining, 0.0))
        print(result, flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(_serve(sys.argv[1]))
    except BaseException as exc:
        print(f"error {type(exc).__name__}: {exc}", flush=True)
        sys.exit(1)
