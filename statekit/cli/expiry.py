"""Expiry on the command line: ``statekit sweep`` and the deadlines ``--json`` reports.

A deadline is shown as ``expires_at`` (ISO 8601, UTC) and ``expires_in`` (seconds left,
rounded to the millisecond), both ``null`` for a scope without one or on a backend
without expiry: the JSON has the same shape on every backend.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

import typer

from statekit.backends.base import Capability
from statekit.cli.options import JsonOption, UrlOption, echo, open_store
from statekit.cli.runtime import ExitCode, emit_json, fail, run
from statekit.store import StateStore

Deadline = tuple[datetime, float] | None  # the deadline and the backend's time now


def deadline_fields(deadline: Deadline) -> dict[str, Any]:
    """``expires_at`` / ``expires_in`` of one scope, as ``--json`` prints them."""
    if deadline is None:
        return {"expires_at": None, "expires_in": None}
    at, now = deadline
    return {"expires_at": at.isoformat(), "expires_in": round(max(0.0, at.timestamp() - now), 3)}


async def scope_deadline(store: StateStore, scope_key: str) -> Deadline:
    """The scope's deadline with the time it is measured from, or ``None`` (also on a
    backend without expiry). The time is the backend's own clock when it keeps one (SQL,
    memory), so ``expires_in`` agrees with the backend's idea of now."""
    if Capability.EXPIRY not in store.capabilities:
        return None
    at = await store.scope_expiry(scope_key)
    clock = getattr(store.backend, "clock", time.time)
    return None if at is None else (at, clock())


async def scope_deadlines(
    store: StateStore, scope_keys: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """``{name: deadline_fields}`` for each named scope key (a snapshot's four scopes)."""
    return {
        name: deadline_fields(await scope_deadline(store, scope_key))
        for name, scope_key in scope_keys.items()
    }


def sweep(
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, max=100_000, help="Entries per transaction."),
    ] = 1000,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reclaim the storage of expired scopes now (SQL: deletes their rows in batches).

    Expired scopes read as absent whether or not they were swept; sweeping only frees
    their storage. Redis reclaims by itself: there it reports nothing to do. A backend
    without expiry is a usage error (exit 2).
    """

    async def work() -> tuple[str, int, int]:
        async with open_store(url) as store:
            info = await store.describe()
            if Capability.EXPIRY not in store.capabilities:
                fail(f"{info.backend} has no expiry (Capability.EXPIRY)", ExitCode.USAGE)
            result = await store.sweep_expired(batch_size=batch_size)
            return info.backend, result.scopes, result.entries

    backend, scopes, entries = run(work)
    if as_json:
        emit_json({"backend": backend, "scopes": scopes, "entries": entries})
    else:
        echo(f"swept {scopes} expired scopes ({entries} entries) on {backend}")
