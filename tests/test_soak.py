"""Soak: 64 concurrent workers mixing every operation, then a full comparison with a model.

The memory run is short and always on; the real-server runs (``slow``) last
``STATEKIT_SOAK_SECONDS`` (default 30) each on Redis and PostgreSQL, concurrently.
"""

from __future__ import annotations

from soak_workload import soak

from statekit import MemoryBackend, StateStore


async def test_soak_on_memory_loses_nothing() -> None:
    store = StateStore(MemoryBackend())
    report = await soak(store, workers=64, seconds=1.0)
    print(report.summary())
    assert report.errors == []
    assert (report.lost, report.phantom, report.wrong_value) == (0, 0, 0)
    assert sum(report.operations.values()) > 1000
    assert report.entries > 0
