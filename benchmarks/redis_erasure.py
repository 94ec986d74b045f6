"""Finding and erasing one actor's scopes on Redis while the store holds 10^3, 10^4 and
10^5 unrelated scopes: the time should not grow with them.

    python benchmarks/redis_erasure.py [--url redis://127.0.0.1:6379/13] [--runs 20]
        [--sizes 1000,10000,100000]

Before each size the store is filled up to that many unrelated scopes: actor scopes of
other actors in the same workspace, bot, binding and runner as the target (so the sets of
those fields are as large as the store, and only the ``actor_id`` set is small), one entry
each. Each run then writes the target actor's scopes (3 runners, 10 entries each) and
measures, through the store, ``find_scopes(actor_type=..., actor_id=...)`` (every scope
listed) and ``erase(...)`` of the same filter. The figures are medians over ``--runs``.
Also reported per size: the memory of the identity index per scope (``MEMORY USAGE`` of
every index set, over the scopes in the store) and the time to create a scope (one
``set_many`` of 1000 new scopes, over 1000). Keys live under a unique prefix, deleted
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from statekit import StateStore
from statekit.backends.base import StateWrite
from statekit.backends.redis import RedisBackend, glob_escape
from statekit.backends.redis.entries import text
from statekit.testing.erasure_places import Place, base_fields

TARGET_RUNNERS = 3
TARGET_ENTRIES = 10
FILL_BATCH = 1000


def _place(fields: dict[str, str], actor_id: str, runner_id: str | None = None) -> Place:
    return Place.of(
        "actor", {**fields, "actor_id": actor_id, "runner_id": runner_id or fields["runner_id"]}
    )


async def _fill(backend: RedisBackend, fields: dict[str, str], first: int, last: int) -> float:
    """Unrelated actor scopes ``first`` to ``last``; seconds per scope created."""
    start = time.perf_counter()
    for low in range(first, last, FILL_BATCH):
        places = [_place(fields, f"other-{n}") for n in range(low, min(last, low + FILL_BATCH))]
        await backend.set_many([StateWrite(p.key, "k", '{"n":1}', p.context) for p in places])
    return (time.perf_counter() - start) / max(1, last - first)


async def _index_bytes(backend: RedisBackend) -> int:
    """``MEMORY USAGE`` of every identity set of the store."""
    client = backend._transport.client
    total = 0
    keys: list[str] = []
    pattern = glob_escape(backend.key_prefix) + "{*}:scopes"
    async for key in client.scan_iter(match=pattern, count=1000):
        keys.append(text(key))
    for low in range(0, len(keys), 1000):
        async with client.pipeline(transaction=False) as pipe:
            for key in keys[low : low + 1000]:
                pipe.memory_usage(key, samples=0)
            total += sum(int(n or 0) for n in await pipe.execute())
    return total


async def _one_run(
    store: StateStore, fields: dict[str, str], backend: RedisBackend
) -> tuple[float, float]:
    """Seconds to find, then to erase, the target's scopes (written anew first)."""
    target = [_place(fields, "u-7", f"r-{n}") for n in range(TARGET_RUNNERS)]
    await backend.set_many([w for p in target for w in p.writes(TARGET_ENTRIES)])
    actor_type = fields["actor_type"]
    start = time.perf_counter()
    found = [info async for info in store.find_scopes(actor_type=actor_type, actor_id="u-7")]
    found_at = time.perf_counter()
    result = await store.erase(actor_type=actor_type, actor_id="u-7")
    erased_at = time.perf_counter()
    assert len(found) == TARGET_RUNNERS, found
    assert (result.scopes, result.entries) == (TARGET_RUNNERS, TARGET_RUNNERS * TARGET_ENTRIES)
    return found_at - start, erased_at - found_at


async def main(url: str, runs: int, sizes: list[int]) -> list[dict[str, float]]:
    """Measure every size, print the table; its rows."""
    prefix = f"statekit-bench:{uuid.uuid4().hex}:"
    backend = RedisBackend.from_url(url, key_prefix=prefix)
    store = StateStore(backend)
    fields = base_fields(uuid.uuid4().hex[:8])
    rows: list[dict[str, float]] = []
    try:
        filled = 0
        for size in sizes:
            create = await _fill(backend, fields, filled, size)
            filled = size
            index = await _index_bytes(backend)
            finds, erases = [], []
            for _ in range(runs):
                find, erase = await _one_run(store, fields, backend)
                finds.append(find)
                erases.append(erase)
            rows.append(
                {
                    "unrelated_scopes": size,
                    "find_s": statistics.median(finds),
                    "erase_s": statistics.median(erases),
                    "index_bytes_per_scope": index / size,
                    "create_s_per_scope": create,
                }
            )
    finally:
        await store.clear_all()
        await store.aclose()
    head = ("unrelated scopes", "find ms", "erase ms", "index B/scope", "create us/scope")
    print(" ".join(f"{name:>16}" for name in head))
    for row in rows:
        figures = [f"{row['unrelated_scopes']:.0f}", f"{row['find_s'] * 1e3:.2f}"]
        figures += [f"{row['erase_s'] * 1e3:.2f}", f"{row['index_bytes_per_scope']:.0f}"]
        figures += [f"{row['create_s_per_scope'] * 1e6:.1f}"]
        print(" ".join(f"{figure:>16}" for figure in figures))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.runs, [int(n) for n in args.sizes.split(",")]))
