"""``statekit doctor`` (can this process use its store, how fast, in what shape?) and
``statekit init`` (make the store's schema ready).

``doctor`` changes nothing: it asks the backend to describe itself, and only when the
layout is ready does it time reads of a random absent key. A missing or outdated schema
is unhealthy (exit 3) and the report names the command that creates it: ``init``, which
an operator also runs ahead of a deploy whose stores open with ``create_schema=False``.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from typing import Annotated, Any

import typer

from statekit.cli.options import JsonOption, UrlOption, echo
from statekit.cli.runtime import ExitCode, emit_json, fail, run
from statekit.connection import connect, load_settings
from statekit.errors import StateBackendError
from statekit.store import StateStore
from statekit.url import BackendURL

PINGS = 5
#: What a report tells the operator to run when the layout is not ready.
INIT_COMMAND = "statekit init"
_SHOWN = ("url", "backend", "server_version", "layout", "namespace", "latency_ms")


async def _probe(store: StateStore) -> dict[str, Any]:
    info = await store.describe()
    report: dict[str, Any] = info.as_dict()
    if not info.layout_ok:
        # Reads would create the missing table (the backend's create_schema on first
        # use): stop here, with the command that does it on purpose.
        report["error"] = f"layout: {info.layout}; run `{INIT_COMMAND}` with the same URL"
        report["fix"] = INIT_COMMAND
        return report
    scope_key = f"runner:doctor:{uuid.uuid4().hex}"
    samples = []
    for _ in range(PINGS):
        started = time.perf_counter()
        await store.state_get(scope_key, "doctor.ping")
        samples.append((time.perf_counter() - started) * 1000)
    report["latency_ms"] = round(statistics.median(samples), 3)
    report["healthy"] = True
    return report


async def diagnose(url: str | None, timeout: float) -> dict[str, Any]:
    """The report; ``healthy`` is False (with ``error``) when the store cannot be used,
    including when its layout is not ready (``fix`` then names the command to run).

    The whole check, closing included, is bounded by ``timeout`` seconds.
    """
    target = BackendURL(url if url is not None else load_settings().url)
    store = connect(target)
    report: dict[str, Any] = {"url": str(target), "healthy": False}
    try:
        report.update(await asyncio.wait_for(_probe(store), timeout))
    except asyncio.TimeoutError:
        report["error"] = f"no answer within {timeout:g} s"
    except StateBackendError as exc:
        report["error"] = " ".join(str(exc).split()) or type(exc).__name__
    finally:
        with contextlib.suppress(asyncio.TimeoutError, StateBackendError):
            await asyncio.wait_for(store.aclose(), timeout)
    return report


def doctor(
    url: UrlOption = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds for the whole check.")
    ] = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Check the backend without changing it (exit 3 if unhealthy).

    Reports reachability, server version, layout and read latency; a missing or
    outdated schema is unhealthy, with the command that creates it.
    """
    report = run(lambda: diagnose(url, timeout))
    if as_json:
        emit_json(report)
    elif report["healthy"]:
        for name in _SHOWN:
            echo(f"{name:<15} {report.get(name, '')}")
        for warning in report.get("warnings", []):
            echo(f"{'WARNING':<15} {warning}")
        echo("healthy")
    if not report["healthy"]:
        typer.echo(f"statekit: unhealthy: {report['url']}: {report['error']}", err=True)
        raise typer.Exit(ExitCode.BACKEND_UNAVAILABLE)


async def _initialise(url: str | None) -> dict[str, Any]:
    async with connect(url) as store:
        changes = await store.create_schema()
        return {**(await store.describe()).as_dict(), "changes": changes}


def init(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Create the store's schema, or upgrade a table found in place: safe to repeat.

    SQL: the table and its indexes; on an existing table (the original store's) the
    missing version column, unique key, widths and collation, every row kept. A no-op on
    Redis and memory. Exit 3 if the layout is still not ready afterwards.
    """
    info = run(lambda: _initialise(url))
    ready = info["layout"] == "ok"
    if as_json:
        emit_json({**info, "ready": ready})
    elif ready:
        for change in info["changes"]:
            echo(f"changed: {change}")
        echo(f"ready: {info['backend']} {info['namespace']}")
    if not ready:
        fail(
            f"{info['namespace']} exists but its layout is not statekit's "
            f"({info['layout']}); {INIT_COMMAND} does not change existing columns: "
            "migrate the table (see the SQL backend's documentation)",
            ExitCode.BACKEND_UNAVAILABLE,
        )
