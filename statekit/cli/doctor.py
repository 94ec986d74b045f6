"""``statekit doctor``: can this process reach its store, how fast, in what shape?"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table

from statekit.cli.options import JsonOption, UrlOption, console
from statekit.cli.runtime import ExitCode, emit_json, run
from statekit.connection import connect, load_settings
from statekit.errors import StateBackendError
from statekit.store import StateStore
from statekit.url import BackendURL

PINGS = 5


async def _probe(store: StateStore) -> dict[str, Any]:
    info: dict[str, Any] = (await store.describe()).as_dict()
    scope_key = f"runner:doctor:{uuid.uuid4().hex}"
    samples = []
    for _ in range(PINGS):
        started = time.perf_counter()
        await store.state_get(scope_key, "doctor.ping")
        samples.append((time.perf_counter() - started) * 1000)
    info["latency_ms"] = round(statistics.median(samples), 3)
    return info


async def diagnose(url: str | None, timeout: float) -> dict[str, Any]:
    """The report; ``healthy`` is False (with ``error``) when the store cannot be used.

    The whole check, closing included, is bounded by ``timeout`` seconds.
    """
    target = BackendURL(url if url is not None else load_settings().url)
    store = connect(target)
    report: dict[str, Any] = {"url": str(target), "healthy": False}
    try:
        report.update(await asyncio.wait_for(_probe(store), timeout))
        report["healthy"] = True
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
    """Check the backend: reachable, server version, latency, layout (exit 3 if unhealthy)."""
    report = run(lambda: diagnose(url, timeout))
    if as_json:
        emit_json(report)
    elif report["healthy"]:
        table = Table(show_header=False, box=None)
        for name in ("url", "backend", "server_version", "layout", "namespace", "latency_ms"):
            table.add_row(name, str(report.get(name, "")))
        for warning in report.get("warnings", []):
            table.add_row("WARNING", warning)
        console.print(table)
        console.print("healthy")
    if not report["healthy"]:
        typer.echo(f"statekit: unhealthy: {report['url']}: {report['error']}", err=True)
        raise typer.Exit(ExitCode.BACKEND_UNAVAILABLE)
