"""Telemetry of the SQL coalescer: a span per caller, one measurement per batch."""

from __future__ import annotations

import asyncio

import pytest
from services import open_target
from telemetry_support import Observed

from benchmarks.matrix import POSTGRES, SQLITE, Target
from statekit import StateStore

SCOPE_KEY = "actor:v2:0123456789abcdef"


@pytest.mark.parametrize("target", [SQLITE, POSTGRES], ids=lambda target: target.name)
async def test_a_coalesced_batch_of_64_calls_has_64_spans_and_one_batch_size(
    target: Target, request: pytest.FixtureRequest
) -> None:
    observed = Observed()
    async with open_target(target, request) as backend:
        store = StateStore(backend, telemetry=observed.telemetry)
        await store.state_get(SCOPE_KEY, "warm")  # the table exists: nothing else queues
        observed.exporter.clear()
        # The first set goes alone; the 64 made while it is in flight go in one batch.
        await asyncio.gather(
            *(
                store.state_set(SCOPE_KEY, f"k{i}", i, "runner", "binding", "actor")
                for i in range(65)
            ),
        )
        assert await store.state_get(SCOPE_KEY, "k64") == 64
    sets = [span for span in observed.spans() if span.name == "set"]
    assert len(sets) == 65
    assert len({span.context.span_id for span in sets if span.context is not None}) == 65
    sizes = [(span.attributes or {}).get("statekit.coalesced.size") for span in sets]
    assert sorted(sizes, key=str) == [64] * 64 + [None]  # the one that went alone has none
    (point,) = [
        point
        for point in observed.points("statekit.batch.size")
        if point.attributes.get("statekit.batch.kind") == "coalesced"
    ]
    assert point.count == 1
    assert point.sum == 64
