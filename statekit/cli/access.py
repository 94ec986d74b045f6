"""Access and erasure requests on the command line: ``statekit find``, ``export`` and
``erase``, filtered by the fields of a scope's identity.

Every identity option is optional and has no default: a filter names exactly the fields
given (``--actor u-7 --actor-type user``), each matched exactly, and at least one is
required (see :meth:`statekit.StateStore.find_scopes`). ``erase`` asks before removing
anything on a terminal, and needs ``--yes`` anywhere else.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from statekit.access import identity_filter
from statekit.backends.base import StateEntry
from statekit.backends.identity import ErasureResult, ScopeInfo
from statekit.cli.addressing import option_group, panel_option
from statekit.cli.options import JsonOption, UrlOption, echo, open_store, rich_console
from statekit.cli.runtime import ExitCode, emit_json, fail, run
from statekit.errors import InvalidFilterError
from statekit.validation import decode_value

_PANEL = "Identity (exact match, at least one)"


@dataclass(frozen=True, slots=True)
class IdentityOptions:
    """The identity options given, by the store's field names."""

    scope: str | None = None
    runner_id: str | None = None
    binding_identity: str | None = None
    bot_id: str | None = None
    workspace_id: str | None = None
    conversation_id: str | None = None
    thread_id: str | None = None
    actor_id: str | None = None
    actor_type: str | None = None
    subject_id: str | None = None
    subject_type: str | None = None

    def given(self) -> dict[str, str]:
        """The filter: every option given (an empty value too, which the store refuses)."""
        return {name: value for name, value in asdict(self).items() if value is not None}

    def checked(self) -> dict[str, Any]:
        """:meth:`given`, refused as a usage error before any I/O when the store would."""
        given = self.given()
        try:
            identity_filter(given)
        except InvalidFilterError as refused:
            fail(str(refused), ExitCode.USAGE)
        return given


def _identity_option(name: str, help: str) -> Any:
    return panel_option(name, help=help, panel=_PANEL)


_IDENTITY_OPTIONS = {
    "scope": _identity_option(
        "--scope", "Only this scope name: conversation, actor, subject or runner."
    ),
    "runner_id": _identity_option("--runner", "Runner id."),
    "binding_identity": _identity_option("--binding", "Binding identity."),
    "bot_id": _identity_option("--bot", "Bot id."),
    "workspace_id": _identity_option("--workspace", "Workspace id."),
    "conversation_id": _identity_option("--conversation", "Conversation id."),
    "thread_id": _identity_option("--thread", "Thread id (conversation scopes)."),
    "actor_id": _identity_option("--actor", "Actor id (actor scopes)."),
    "actor_type": _identity_option("--actor-type", "Actor type, with --actor."),
    "subject_id": _identity_option("--subject", "Subject id (subject scopes)."),
    "subject_type": _identity_option("--subject-type", "Subject type, with --subject."),
}
identity_options = option_group(_IDENTITY_OPTIONS, IdentityOptions, "identity")


@identity_options
def find(url: UrlOption = None, as_json: JsonOption = False, *, identity: IdentityOptions) -> None:
    """List the scopes whose identity has the given fields: key, scope name, entries."""
    given = identity.checked()

    async def work() -> list[ScopeInfo]:
        found: list[ScopeInfo] = []
        async with open_store(url) as store:
            async for info in store.find_scopes(**given):
                if as_json:
                    found.append(info)
                else:
                    echo(f"{info.scope_key}\t{info.scope}\t{info.entries} entries")
        return found

    found = run(work)
    if as_json:
        emit_json(
            {
                "scopes": [_scope_record(info) for info in found],
                "total": {"scopes": len(found), "entries": sum(i.entries for i in found)},
            }
        )


def _scope_record(info: ScopeInfo) -> dict[str, Any]:
    return {
        "scope_key": info.scope_key,
        "scope": info.scope,
        "entries": info.entries,
        "context": info.context.as_dict(),
    }


OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="Write the JSON lines to FILE instead of stdout.", dir_okay=False
    ),
]


@identity_options
def export(
    output: OutputOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
    *,
    identity: IdentityOptions,
) -> None:
    """Write every entry of the matching scopes as JSON lines (an access request's answer).

    One entry per line: scope_key, state_key, value, context, created_at, updated_at,
    version, expires_at. Without identity options, every entry of the store. With
    --output, a summary goes to stdout (--json: as one JSON document).
    """
    given = identity.checked() if identity.given() else {}

    async def work() -> tuple[int, int]:
        scopes: set[str] = set()
        entries = 0
        async with open_store(url) as store:
            with _sink(output) as sink, _progress() as advance:
                async for entry in store.export(**given):
                    sink.write(json.dumps(entry_record(entry), ensure_ascii=False) + "\n")
                    scopes.add(entry.scope_key)
                    entries += 1
                    advance()
        return len(scopes), entries

    scopes, entries = run(work)
    if output is None:
        return
    if as_json:
        emit_json({"output": str(output), "scopes": scopes, "entries": entries})
    else:
        echo(f"exported {entries} entries of {scopes} scopes to {output}")


def entry_record(entry: StateEntry) -> dict[str, Any]:
    """One exported entry as its JSON line holds it: the value decoded, times in ISO 8601.

    A stored text that is not valid JSON (a row written outside statekit) is still part
    of what is held: ``value`` is then ``null`` and ``value_json`` carries the text."""
    try:
        value, raw = decode_value(entry.value_json), {}
    except (ValueError, RecursionError):
        value, raw = None, {"value_json": entry.value_json}
    return {
        "scope_key": entry.scope_key,
        "state_key": entry.state_key,
        "value": value,
        **raw,
        "context": entry.context.as_dict(),
        "created_at": entry.created_at.isoformat(),
        "updated_at": entry.updated_at.isoformat(),
        "version": entry.version,
        "expires_at": None if entry.expires_at is None else entry.expires_at.isoformat(),
    }


@contextlib.contextmanager
def _sink(output: Path | None) -> Iterator[IO[str]]:
    if output is None:
        yield sys.stdout
        return
    try:
        stream = output.open("w", encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}", ExitCode.USAGE)
    with stream:
        yield stream


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[], None]]:
    """A counter of exported entries on stderr, drawn only when stderr is a terminal."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = rich_console(stderr=True)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("Exporting {task.completed} entries"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )
    with progress:
        task = progress.add_task("export", total=None)

        def advance() -> None:
            progress.advance(task)

        yield advance


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


@identity_options
def erase(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be erased; remove nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Erase without asking (needed off a terminal).")
    ] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
    *,
    identity: IdentityOptions,
) -> None:
    """Remove every entry of every matching scope, with its bookkeeping.

    On a terminal it counts first and asks; elsewhere it needs --yes (exit 2 without).
    An erase logs one audit record (field names and counts, never the ids).
    """
    given = identity.checked()
    if not (dry_run or yes or _stdin_is_terminal()):
        fail("erase removes data: pass --yes when stdin is not a terminal", ExitCode.USAGE)

    async def work() -> ErasureResult:
        async with open_store(url) as store:
            if dry_run:
                return await store.erase(**given, dry_run=True)
            if not yes:
                planned = await store.erase(**given, dry_run=True)
                if planned.scopes == 0:
                    return planned
                _confirm(planned, given)
            return await store.erase(**given)

    result = run(work)
    if as_json:
        emit_json({"dry_run": dry_run, **asdict(result), "by_scope": dict(result.by_scope)})
        return
    by_scope = ", ".join(f"{name} {count}" for name, count in sorted(result.by_scope.items()))
    counts = f"{result.scopes} scopes ({result.entries} entries)"
    if dry_run:
        echo(f"would erase {counts}{': ' + by_scope if by_scope else ''}; nothing removed")
    else:
        echo(f"erased {counts}{': ' + by_scope if by_scope else ''}")


def _confirm(planned: ErasureResult, given: dict[str, str]) -> None:
    named = ", ".join(f"{name}={value}" for name, value in given.items())
    question = f"Erase {planned.scopes} scopes ({planned.entries} entries) matching {named}?"
    if not typer.confirm(question, default=False, err=True):
        fail("not confirmed: nothing erased", ExitCode.NOT_FOUND_OR_REFUSED)
