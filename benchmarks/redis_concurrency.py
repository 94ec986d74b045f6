"""Ops/s of statekit on Redis against raw redis-py, at 1 and 64 operations in flight.

    python benchmarks/redis_concurrency.py [--url redis://127.0.0.1:6379/13] [--runs 3]

Raw redis-py issues one call per operation through its default connection pool; statekit
runs the store's public methods with ``auto_pipeline`` on and off:

========  ===========================================  ====================================
kind      statekit                                     raw redis-py
========  ===========================================  ====================================
set       ``state_set`` (one ``EVALSHA`` write)        ``HSET``
update    ``apply_update_from_event`` (same write,     ``HSET``
          scope key and context built from the event)
get       ``state_get`` (one ``HGET``)                 ``HGET``
snapshot  ``build_snapshot_from_event``: 4 scopes of   the same 4 hashes: one pipeline of
          10 keys of ~250-byte JSON objects            4 ``HGETALL``, every value decoded
========  ===========================================  ====================================

``set``, ``get`` run at 1 and 64 in flight, ``update`` and ``snapshot`` at 1. Within a run
the variants take turns in small chunks of operations (100 at 1 in flight, 1024 at 64), so
the load of a shared machine hits them alike; a run's ratio compares the variants' rates
in that run. The figures are the medians over ``--runs`` runs: of each variant's rate,
and of its ratio to raw redis-py. Keys live under a unique prefix and are deleted
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import cast

import redis.asyncio as aioredis

from statekit import StateStore
from statekit.backends.redis import RedisBackend
from statekit.scope import VALID_STATE_SCOPES
from statekit.testing import Identity, new_identity

Op = Callable[[int], Awaitable[object]]
SCOPES = 64
SNAPSHOT_KEYS = 10
KINDS = (("set", 1), ("update", 1), ("get", 1), ("snapshot", 1), ("set", 64), ("get", 64))


def _snapshot_value(n: int) -> dict[str, object]:
    """A JSON object of about 250 bytes, as a runner would keep (settings, a summary)."""
    return {
        "id": n,
        "title": f"entry number {n}",
        "tags": ["alpha", "beta", "gamma"],
        "summary": "lorem ipsum dolor sit amet " * 4,
        "score": n * 1.5,
        "done": n % 2 == 0,
        "owner": {"kind": "user", "id": f"user-{n:04d}"},
    }


async def timed_chunk(op: Op, in_flight: int, count: int, offset: int) -> float:
    """Seconds taken by ``count`` calls of ``op`` with ``in_flight`` callers."""
    per_task = count // in_flight

    async def worker(first: int) -> None:
        for i in range(per_task):
            await op(first + i * in_flight)

    start = time.perf_counter()
    await asyncio.gather(*(worker(offset + n) for n in range(in_flight)))
    return time.perf_counter() - start


async def alternate(variants: dict[str, Op], in_flight: int, total: int) -> dict[str, float]:
    """One run: ops/s of each variant over ``total`` calls, the variants taking turns
    (``redis_expiry`` times its variants the same way)."""
    chunk = 100 if in_flight == 1 else 16 * in_flight
    for op in variants.values():  # connections open, caches warm
        await timed_chunk(op, in_flight, chunk, 0)
    elapsed = dict.fromkeys(variants, 0.0)
    for offset in range(0, total, chunk):
        for name, op in variants.items():
            elapsed[name] += await timed_chunk(op, in_flight, chunk, offset)
    return {name: total / seconds for name, seconds in elapsed.items()}


def _raw_ops(client: aioredis.Redis, prefix: str, snapshot_keys: list[str]) -> dict[str, Op]:
    # redis-py types these "awaitable or value" (its sync and async clients share them).
    async def set_(i: int) -> object:
        key = f"{prefix}raw:{{{i % SCOPES}}}"
        return await cast(Awaitable[int], client.hset(key, f"k{i % 100}", '{"n":1}'))

    async def get(i: int) -> object:
        key = f"{prefix}raw:{{{i % SCOPES}}}"
        return await cast(Awaitable[object], client.hget(key, f"k{i % 100}"))

    async def snapshot(i: int) -> object:
        async with client.pipeline(transaction=False) as pipe:
            for key in snapshot_keys:
                pipe.hgetall(key)
            replies = await pipe.execute()
        return [{k.decode(): json.loads(v) for k, v in reply.items()} for reply in replies]

    return {"set": set_, "update": set_, "get": get, "snapshot": snapshot}


def _store_ops(store: StateStore, identities: list[Identity], snapshot: Identity) -> dict[str, Op]:
    async def set_(i: int) -> object:
        return await store.state_set(
            f"conversation:v2:{i % SCOPES}",
            f"k{i % 100}",
            {"n": i},
            "runner",
            "b-1",
            "conversation",
        )

    async def update(i: int) -> object:
        ident = identities[i % SCOPES]
        return await store.apply_update_from_event(
            ident.event, ident.binding, ident.descriptor, "conversation", f"k{i % 100}", {"n": i}
        )

    async def get(i: int) -> object:
        return await store.state_get(f"conversation:v2:{i % SCOPES}", f"k{i % 100}")

    async def snapshot_(i: int) -> object:
        return await store.build_snapshot_from_event(
            snapshot.event, snapshot.binding, snapshot.descriptor
        )

    return {"set": set_, "update": update, "get": get, "snapshot": snapshot_}


async def main(url: str, runs: int) -> None:
    prefix = f"statekit-bench:{uuid.uuid4().hex}:"
    raw_client = aioredis.Redis.from_url(url)
    stores = {
        flag: StateStore(
            RedisBackend.from_url(url, key_prefix=prefix, auto_pipeline=flag, pool_size=64)
        )
        for flag in (True, False)
    }
    identities = [new_identity() for _ in range(SCOPES)]
    snapshot = new_identity()
    for scope in VALID_STATE_SCOPES:
        ok = await stores[True].apply_updates_from_event(
            snapshot.event,
            snapshot.binding,
            snapshot.descriptor,
            [(scope, f"key-{n}", _snapshot_value(n)) for n in range(SNAPSHOT_KEYS)],
        )
        assert all(result == (True, None) for result in ok)
    snapshot_keys = [f"{prefix}{{{snapshot.scope_key(s)}}}" for s in VALID_STATE_SCOPES]
    ops: dict[str, dict[str, Op]] = {
        "raw redis-py": _raw_ops(raw_client, prefix, snapshot_keys),
        "statekit auto_pipeline=on": _store_ops(stores[True], identities, snapshot),
        "statekit auto_pipeline=off": _store_ops(stores[False], identities, snapshot),
    }
    rates: dict[tuple[str, str, int], list[float]] = {}
    ratios: dict[tuple[str, str, int], list[float]] = {}
    try:
        for kind, in_flight in KINDS:
            total = 1000 if in_flight == 1 else 8192
            for _ in range(runs):
                run = await alternate({name: v[kind] for name, v in ops.items()}, in_flight, total)
                for name, rate in run.items():
                    print(f"  {name} {kind} x{in_flight}: {rate:.0f}/s", file=sys.stderr)
                    rates.setdefault((name, kind, in_flight), []).append(rate)
                    ratio = rate / run["raw redis-py"]
                    ratios.setdefault((name, kind, in_flight), []).append(ratio)
    finally:
        await stores[True].clear_all()
        for store in stores.values():
            await store.aclose()
        keys = [k async for k in raw_client.scan_iter(match=f"{prefix}raw:*")]
        if keys:
            await raw_client.delete(*keys)
        await raw_client.aclose()

    print(f"{'variant':30} {'op':8} {'in flight':>9} {'ops/s':>9} {'x raw':>6}")
    for (name, kind, in_flight), values in rates.items():
        ratio = statistics.median(ratios[(name, kind, in_flight)])
        rate = statistics.median(values)
        print(f"{name:30} {kind:8} {in_flight:>9} {rate:>9.0f} {ratio:>6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.runs))
