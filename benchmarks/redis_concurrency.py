"""Ops/s of statekit on Redis against raw redis-py, at 1 and 64 operations in flight.

    python benchmarks/redis_concurrency.py [--url redis://127.0.0.1:6379/13] [--runs 3]

Raw redis-py issues one call per operation (``HSET`` / ``HGET``) through its default
connection pool; statekit runs ``StateStore.state_set`` (one ``EVALSHA`` write) and
``state_get`` (one ``HGET``) with ``auto_pipeline`` on and off. Each figure is the median
of ``--runs`` runs. Keys live under a unique prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from statekit import StateStore
from statekit.backends.redis import RedisBackend

Op = Callable[[int], Awaitable[object]]
SCOPES = 64


async def _rate(op: Op, in_flight: int, total: int) -> float:
    """Operations per second of ``total`` calls of ``op`` with ``in_flight`` callers."""
    per_task = total // in_flight

    async def worker(offset: int) -> None:
        for i in range(per_task):
            await op(offset + i * in_flight)

    await asyncio.gather(*(op(i) for i in range(in_flight)))  # connections open first
    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(in_flight)))
    return per_task * in_flight / (time.perf_counter() - start)


async def _raw_ops(url: str, prefix: str) -> tuple[aioredis.Redis, Op, Op]:
    client = aioredis.Redis.from_url(url)

    async def set_(i: int) -> object:
        return await client.hset(f"{prefix}raw:{{{i % SCOPES}}}", f"k{i % 100}", '{"n":1}')

    async def get(i: int) -> object:
        return await client.hget(f"{prefix}raw:{{{i % SCOPES}}}", f"k{i % 100}")

    return client, set_, get


def _store_ops(store: StateStore) -> tuple[Op, Op]:
    async def set_(i: int) -> object:
        return await store.state_set(
            f"conversation:v2:{i % SCOPES}",
            f"k{i % 100}",
            {"n": i},
            "runner",
            "b-1",
            "conversation",
        )

    async def get(i: int) -> object:
        return await store.state_get(f"conversation:v2:{i % SCOPES}", f"k{i % 100}")

    return set_, get


async def main(url: str, runs: int) -> None:
    prefix = f"statekit-bench:{uuid.uuid4().hex}:"
    raw_client, raw_set, raw_get = await _raw_ops(url, prefix)
    stores = {
        flag: StateStore(
            RedisBackend.from_url(url, key_prefix=prefix, auto_pipeline=flag, pool_size=64)
        )
        for flag in (True, False)
    }
    ops: dict[str, tuple[Op, Op]] = {
        "raw redis-py": (raw_set, raw_get),
        "statekit auto_pipeline=on": _store_ops(stores[True]),
        "statekit auto_pipeline=off": _store_ops(stores[False]),
    }
    results: dict[tuple[str, str, int], float] = {}
    try:
        for in_flight, total in ((1, 1000), (64, 8000)):
            for kind in ("set", "get"):
                rates: dict[str, list[float]] = {name: [] for name in ops}
                for _ in range(runs):  # interleaved, so drift hits every variant alike
                    for name, (set_op, get_op) in ops.items():
                        op = set_op if kind == "set" else get_op
                        rate = await _rate(op, in_flight, total)
                        print(f"  {name} {kind} x{in_flight}: {rate:.0f}/s", file=sys.stderr)
                        rates[name].append(rate)
                for name in ops:
                    results[(name, kind, in_flight)] = statistics.median(rates[name])
    finally:
        await stores[True].clear_all()
        for store in stores.values():
            await store.aclose()
        keys = [k async for k in raw_client.scan_iter(match=f"{prefix}raw:*")]
        if keys:
            await raw_client.delete(*keys)
        await raw_client.aclose()

    print(f"{'variant':30} {'op':4} {'in flight':>9} {'ops/s':>9} {'x raw':>6}")
    for (name, kind, in_flight), rate in results.items():
        ratio = rate / results[("raw redis-py", kind, in_flight)]
        print(f"{name:30} {kind:4} {in_flight:>9} {rate:>9.0f} {ratio:>6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.runs))
