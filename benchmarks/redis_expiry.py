"""What expiry costs on Redis: a set with a ttl against one without, and memory per scope.

    python -m benchmarks.redis_expiry [--url redis://127.0.0.1:6379/13] [--runs 5]
                                      [--scopes 2000] [--quick]

**Write cost.** A set of a ~210-byte value into 64 scopes without a ttl (the write
script without expiry) and with a 30-day ttl (the script that also sets ``PEXPIREAT`` on
the scope's four keys), at 1 and 64 calls in flight, with auto-pipelining on and off, at
two levels: the backend's ``set`` called directly (the storage's own cost, where the
extra server work weighs most) and the store's ``state_set`` (validation, encoding and
scope checks included: what a host sees), the store configured with a 30-day expiry for
the conversation scope or without one. Within a run the two variants take
turns in small chunks (100 calls at 1 in flight, 1,024 at 64), so a shared machine's
load hits both alike; each ratio (with ttl / without) is the median of the runs' ratios.

**Memory.** ``--scopes`` conversation scopes of 10 entries of ~210-byte JSON values,
written through ``StateStore.apply_updates_from_event`` (real scope keys and contexts),
then given a deadline by one more write each. Per scope: the sum of ``MEMORY USAGE`` of
its four keys (exact, ``SAMPLES 0``) and the growth of ``INFO memory`` ``used_memory``
divided by the scope count (allocator overhead and the expires table included; other
clients of a shared server add noise to it, not to ``MEMORY USAGE``).

Keys live under a unique prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

from benchmarks.redis_concurrency import Op, alternate
from statekit import StateStore
from statekit.backends.base import ScopeContext, StateWrite
from statekit.backends.redis import RedisBackend
from statekit.testing import new_identity

SCOPES = 64
TTL = 30 * 86400.0
ENTRIES_PER_SCOPE = 10
CASES = ((True, 1), (True, 64), (False, 1), (False, 64))


def value(n: int) -> dict[str, object]:
    """A JSON object of about 210 bytes, as a runner keeps (a step, a summary)."""
    return {
        "id": n,
        "step": f"step-{n:04d}",
        "tags": ["alpha", "beta"],
        "summary": "lorem ipsum dolor sit amet " * 3,
        "score": n * 1.5,
        "done": n % 2 == 0,
        "owner": {"kind": "user", "id": f"user-{n:04d}"},
    }


VALUE_JSON = json.dumps(value(1), separators=(",", ":"))


def _store_ops(url: str, prefix: str, auto_pipeline: bool) -> tuple[dict[str, Op], list[Any]]:
    """``state_set`` through a store without expiry and one with a 30-day expiry for the
    conversation scope."""
    ops: dict[str, Op] = {}
    stores = []
    for name, expiry in (("no ttl", None), ("ttl", {"conversation": TTL})):
        backend = RedisBackend.from_url(
            url, key_prefix=prefix, auto_pipeline=auto_pipeline, pool_size=64
        )
        store = StateStore(backend, expiry=expiry)
        stores.append(store)

        def op(store: StateStore, tag: str) -> Op:
            async def set_(i: int) -> object:
                scope_key = f"conversation:v2:{tag}-{i % SCOPES}"
                return await store.state_set(
                    scope_key, f"k{i % 100}", value(i), "runner", "b-1", "conversation"
                )

            return set_

        ops[name] = op(store, name.replace(" ", "-"))
    return ops, stores


def _set_ops(backend: RedisBackend) -> dict[str, Op]:
    contexts = [
        ScopeContext(f"runner-{n}", f"binding-{n}", "conversation", conversation_id=f"c-{n}")
        for n in range(SCOPES)
    ]

    def op(ttl: float | None, tag: str) -> Op:
        async def set_(i: int) -> object:
            scope = i % SCOPES
            scope_key = f"conversation:v2:{tag}-{scope}"
            return await backend.set(
                StateWrite(scope_key, f"k{i % 100}", VALUE_JSON, contexts[scope], ttl=ttl)
            )

        return set_

    # Separate scopes per variant: a ttl write never gives the other's scopes a deadline.
    return {"no ttl": op(None, "plain"), "ttl": op(TTL, "timed")}


async def _compare(ops: dict[str, Op], in_flight: int, runs: int, total: int) -> dict[str, Any]:
    """The medians of ``runs`` runs of the two variants taking turns, and of their ratio."""
    rates: dict[str, list[float]] = {"no ttl": [], "ttl": []}
    ratios: list[float] = []
    for n in range(runs):
        order = ops if n % 2 == 0 else dict(reversed(ops.items()))
        run = await alternate(order, in_flight, total)
        for name, rate in run.items():
            rates[name].append(rate)
        ratios.append(run["ttl"] / run["no ttl"])
        print(f"  x{in_flight}: {run}", file=sys.stderr)
    return {
        "no_ttl_ops_per_s": statistics.median(rates["no ttl"]),
        "ttl_ops_per_s": statistics.median(rates["ttl"]),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
    }


async def write_cost(url: str, runs: int, quick: bool) -> list[dict[str, Any]]:
    """Ops/s with and without a ttl, and their ratio: per level (the backend's ``set``,
    the store's ``state_set``), pipelining mode and calls in flight."""
    results = []
    for level in ("backend", "store"):
        for auto_pipeline, in_flight in CASES:
            prefix = f"statekit-bench:{uuid.uuid4().hex}:"
            total = 2000 if in_flight == 1 else 16384
            if quick:
                total //= 10
            if level == "backend":
                backend = RedisBackend.from_url(
                    url, key_prefix=prefix, auto_pipeline=auto_pipeline, pool_size=64
                )
                ops, closing = _set_ops(backend), [StateStore(backend)]
            else:
                ops, closing = _store_ops(url, prefix, auto_pipeline)
            try:
                figures = await _compare(ops, in_flight, runs, total)
            finally:
                await closing[0].clear_all()
                for store in closing:
                    await store.aclose()
            results.append(
                {"level": level, "auto_pipeline": auto_pipeline, "in_flight": in_flight} | figures
            )
    return results


async def _used_memory(backend: RedisBackend) -> int:
    info = await backend._transport.client.info("memory")
    return int(info["used_memory"])


async def _key_bytes(backend: RedisBackend, scope_keys: list[str]) -> float:
    """Mean over ``scope_keys`` of the ``MEMORY USAGE`` of a scope's four keys."""
    client = backend._transport.client
    total = 0
    for scope_key in scope_keys:
        base = f"{backend.key_prefix}{{{scope_key}}}"
        for key in (base, base + ":meta", base + ":ctx", base + ":idx"):
            total += int(await client.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0"))
    return total / len(scope_keys)


async def memory(url: str, scopes: int) -> dict[str, Any]:
    """Bytes per conversation scope of 10 ~210-byte entries, without and with a deadline."""
    prefix = f"statekit-bench:{uuid.uuid4().hex}:"
    backend = RedisBackend.from_url(url, key_prefix=prefix)
    store = StateStore(backend)
    identities = [new_identity() for _ in range(scopes)]
    updates = [("conversation", f"step.{n}", value(n)) for n in range(ENTRIES_PER_SCOPE)]
    keys = [ident.scope_key("conversation") for ident in identities]
    try:
        await backend.read_scopes(keys[:1])  # connections open before the first figure
        before = await _used_memory(backend)
        for ident in identities:
            await store.apply_updates_from_event(
                ident.event, ident.binding, ident.descriptor, updates
            )
        plain = await _used_memory(backend)
        plain_keys = await _key_bytes(backend, keys)
        stored = (await backend.read_scopes(keys[:1]))[keys[0]]
        # Written again with a ttl: an existing entry, so the stored context is kept.
        context = ScopeContext("runner", "binding", "conversation")
        for scope_key in keys:
            await backend.set(StateWrite(scope_key, "step.0", stored["step.0"], context, ttl=TTL))
        timed = await _used_memory(backend)
        timed_keys = await _key_bytes(backend, keys)
        value_bytes = statistics.mean(len(v) for v in stored.values())
    finally:
        await store.clear_all()
        await store.aclose()
    return {
        "scopes": scopes,
        "entries_per_scope": ENTRIES_PER_SCOPE,
        "value_json_bytes": value_bytes,
        "memory_usage_per_scope": plain_keys,
        "memory_usage_per_scope_with_deadline": timed_keys,
        "used_memory_per_scope": (plain - before) / scopes,
        "used_memory_per_scope_with_deadline": (timed - before) / scopes,
    }


def _print(costs: list[dict[str, Any]], mem: dict[str, Any], server: str) -> None:
    print(f"Redis {server}: set with a {TTL / 86400:.0f}-day ttl against without")
    print(f"{'level':8} {'mode':14} {'in flight':>9} {'no ttl/s':>9} {'ttl/s':>9} {'ratio':>6}")
    for c in costs:
        mode = "auto_pipeline" if c["auto_pipeline"] else "direct"
        print(
            f"{c['level']:8} {mode:14} {c['in_flight']:>9} {c['no_ttl_ops_per_s']:>9.0f} "
            f"{c['ttl_ops_per_s']:>9.0f} {c['ratio']:>6.2f}"
        )
    print(
        f"\nmemory per conversation scope ({mem['scopes']} scopes of "
        f"{mem['entries_per_scope']} entries, values of {mem['value_json_bytes']:.0f} bytes):"
    )
    print(f"{'':20} {'MEMORY USAGE':>13} {'used_memory':>12}")
    print(
        f"{'no deadline':20} {mem['memory_usage_per_scope']:>13.0f} "
        f"{mem['used_memory_per_scope']:>12.0f}"
    )
    print(
        f"{'with a deadline':20} {mem['memory_usage_per_scope_with_deadline']:>13.0f} "
        f"{mem['used_memory_per_scope_with_deadline']:>12.0f}"
    )


async def main(url: str, runs: int, scopes: int, quick: bool) -> dict[str, Any]:
    """Both measurements, printed; the figures as one JSON-ready document."""
    probe = RedisBackend.from_url(url, key_prefix=f"statekit-bench:{uuid.uuid4().hex}:")
    server = (await probe.describe()).server_version
    await probe.aclose()
    costs = await write_cost(url, runs, quick)
    mem = await memory(url, scopes)
    _print(costs, mem, server)
    return {"server": server, "write_cost": costs, "memory": mem}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scopes", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args()
    scopes = 20 if args.quick else args.scopes
    runs = 1 if args.quick else args.runs
    document = asyncio.run(main(args.url, runs, scopes, args.quick))
    if args.out is not None:
        args.out.write_text(json.dumps(document, indent=2))
