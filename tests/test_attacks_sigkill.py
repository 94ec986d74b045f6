"""SIGKILLed SQLite writer processes neither corrupt the file nor lose an acknowledged write.

In each of ``ROUNDS`` rounds, ``WRITERS`` worker processes (``attack_workers.py write``)
write to one SQLite file at once: single keys, and every third write a batch of two keys
through ``apply_updates_from_event``. A writer prints ``ack <n>`` once write ``n`` has
returned; the parent records those lines and SIGKILLs each writer at a random moment
after its first acknowledgement (mid-statement, mid-transaction, mid-commit: wherever it
happens to be). The next round opens the file as the killed writers left it.

Afterwards ``PRAGMA integrity_check`` says ``ok``, and each writer's keys hold exactly
the state after its last acknowledged write, or after the one write it may have had in
flight when killed (applied whole or not at all: a batch is never half there).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from attack_workers import state_after
from worker_processes import Worker, deadline, kill_all, open_job, release, spawn

import statekit
from statekit.testing.identities import new_identity

pytestmark = [pytest.mark.sqlite, pytest.mark.slow]

ROUNDS = 3
WRITERS = 3
#: Each writer is killed this many seconds (uniformly drawn) after its first write.
KILL_AFTER = (0.05, 0.6)
#: Seconds for a round's interpreters to start: a bound against a hang, not a figure of
#: the test (3 interpreters on a loaded 2-core machine, beside the other tests, took 30).
READY_BOUND = 60.0


async def _acknowledged(worker: Worker, kill_after: float) -> int:
    """The last write ``worker`` acknowledged before it was killed, ``kill_after`` seconds
    after its first acknowledgement (so that every writer gets some writes done)."""
    last = 0
    while line := await worker.read_line():
        if not line.startswith("ack "):
            pytest.fail(f"writer failed: {worker.lines[-3:]}")
        if last == 0:
            asyncio.get_running_loop().call_later(kill_after, worker.kill)
        last = int(line.split()[1])
    return last


async def _round(
    workers: list[Worker], url: str, tag: str, names: list[str], rng: random.Random
) -> dict[str, int]:
    """One round of writers killed at random moments; each one's last acknowledged write."""
    try:
        configs = [
            {
                "url": url,
                "options": {},
                "tag": tag,
                "writer": name,
                "count": 10**9,  # until killed
                "deadline": deadline(READY_BOUND + 60),
            }
            for name in names
        ]
        await open_job(workers, configs, READY_BOUND)
        release(workers)
        last = await asyncio.wait_for(
            asyncio.gather(*(_acknowledged(w, rng.uniform(*KILL_AFTER)) for w in workers)),
            KILL_AFTER[1] + 30,
        )
    finally:
        await kill_all(workers)
    return dict(zip(names, last, strict=True))


async def test_sigkilled_sqlite_writers_lose_no_acknowledged_write(
    tmp_path: Path, summary_line: Callable[[str], None]
) -> None:
    path = tmp_path / "killed.db"
    url = f"sqlite+aiosqlite:///{path}"
    tag = uuid.uuid4().hex[:12]
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    acknowledged: dict[str, int] = {}
    following = await spawn("write", WRITERS)
    try:
        for number in range(ROUNDS):
            # The next round's interpreters start meanwhile; they open the file only
            # once this round's writers are dead.
            workers = following
            following = await spawn("write", WRITERS) if number + 1 < ROUNDS else []
            names = [f"r{number}w{n}" for n in range(WRITERS)]
            acknowledged.update(await _round(workers, url, tag, names, rng))
    finally:
        await kill_all(following)
    summary_line(
        f"sigkill on sqlite (seed {seed}): {ROUNDS * WRITERS} writers killed after "
        f"{sum(acknowledged.values())} acknowledged writes"
    )
    # Every writer got some writes acknowledged before it was killed.
    assert all(acknowledged.values()), acknowledged

    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    ident = new_identity(tag=tag)
    async with statekit.connect(url) as store:
        snapshot = await store.build_snapshot_from_event(
            ident.event, ident.binding, ident.descriptor
        )
    stored = snapshot["conversation"]
    stored.pop("external.conversation_id")  # seeded from the event, never written
    for writer, last in acknowledged.items():
        mine = {k: v for k, v in stored.items() if k.startswith(f"{writer}:")}
        # Acknowledged, or also the write in flight when the writer was killed.
        assert mine in (state_after(writer, last), state_after(writer, last + 1)), (
            f"seed {seed}: {writer} acknowledged {last} writes, stores {mine}"
        )
    assert {key.split(":")[0] for key in stored} <= set(acknowledged)
