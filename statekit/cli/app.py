"""The ``statekit`` Typer application: state commands here, the rest in sibling modules."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from statekit.backends.base import Capability
from statekit.cli.addressing import ScopeAddress, scope_options
from statekit.cli.expiry import Deadline, deadline_fields, scope_deadline, scope_deadlines
from statekit.cli.options import JsonOption, KeyArgument, UrlOption, echo, echo_value, open_store
from statekit.cli.runtime import ExitCode, emit_json, fail, run
from statekit.cli.usage import StatekitGroup
from statekit.cli.values import read_value
from statekit.scope import build_state_scope_keys, normalize_state_key
from statekit.store import StateStore
from statekit.validation import Refusal, check_scope_key

app = typer.Typer(
    name="statekit",
    cls=StatekitGroup,
    help="Host-owned runner state: read and write it, move it between backends, check it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from statekit import __version__

        typer.echo(f"statekit {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            expose_value=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    pass


@app.command()
@scope_options
def get(
    key: KeyArgument, url: UrlOption = None, as_json: JsonOption = False, *, address: ScopeAddress
) -> None:
    """Print a value (exit 1 when the key is absent)."""

    async def work() -> tuple[bool, Any, int, Deadline]:
        async with open_store(url) as store:
            scope_key = address.key()
            if Capability.VERSIONS in store.capabilities:
                value, version = await store.state_get_versioned(scope_key, key)
                found = version > 0
            else:
                value, version = await store.state_get(scope_key, key), 0
                found = value is not None
            deadline = await scope_deadline(store, scope_key) if as_json and found else None
            return found, value, version, deadline

    found, value, version, deadline = run(work)
    scope_key = address.key()
    if as_json:
        emit_json(
            {
                "scope_key": scope_key,
                "key": normalize_state_key(key),
                "found": found,
                "value": value,
                "version": version,
                **deadline_fields(deadline),
            }
        )
    elif found:
        echo_value(value)
    if not found:
        if not as_json:
            typer.echo(f"statekit: {key!r} not found in {scope_key}", err=True)
        raise typer.Exit(ExitCode.NOT_FOUND_OR_REFUSED)


@app.command("set")
@scope_options
def set_(
    key: KeyArgument,
    value: Annotated[
        str,
        typer.Argument(
            help="The value as JSON text; '-' reads it from stdin, '@FILE' from a file.",
            show_default=False,
        ),
    ],
    expected_version: Annotated[
        int | None,
        typer.Option(
            "--expected-version",
            min=0,
            help="Write only if the version is this (0: only if absent).",
        ),
    ] = None,
    expiry: Annotated[
        str | None,
        typer.Option(
            "--expiry",
            help="The scope's expiry for this write ('30m', '7d', 'never'), "
            "instead of the configured one.",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
    *,
    address: ScopeAddress,
) -> None:
    """Write a value through the store's validation (needs --runner; exit 1 if refused)."""
    decoded = read_value(value)
    context = address.context()
    scope_key = address.key()

    async def work() -> tuple[bool, str | None]:
        async with open_store(url) as store:
            return await store.state_set(
                scope_key,
                key,
                decoded,
                context.runner_id,
                context.binding_identity,
                context.scope,
                context.as_dict(),
                expected_version=expected_version,
                expiry=expiry,
            )

    ok, reason = run(work)
    if as_json:
        emit_json(
            {"scope_key": scope_key, "key": normalize_state_key(key), "ok": ok, "error": reason}
        )
    elif ok:
        echo(f"set {normalize_state_key(key)!r} in {scope_key}")
    if not ok:
        if not as_json:
            typer.echo(f"statekit: refused: {reason}", err=True)
        raise typer.Exit(ExitCode.NOT_FOUND_OR_REFUSED)


@app.command()
@scope_options
def delete(
    key: KeyArgument, url: UrlOption = None, as_json: JsonOption = False, *, address: ScopeAddress
) -> None:
    """Delete a key (exit 1 when it was absent)."""
    scope_key = address.key()

    async def work() -> bool:
        async with open_store(url) as store:
            return await store.state_delete(scope_key, key)

    existed = run(work)
    if as_json:
        emit_json({"scope_key": scope_key, "key": normalize_state_key(key), "deleted": existed})
    elif existed:
        echo(f"deleted {normalize_state_key(key)!r} from {scope_key}")
    if not existed:
        if not as_json:
            typer.echo(f"statekit: {key!r} not found in {scope_key}", err=True)
        raise typer.Exit(ExitCode.NOT_FOUND_OR_REFUSED)


@app.command("list")
@scope_options
def list_(
    prefix: Annotated[str | None, typer.Option("--prefix", help="Literal key prefix.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, max=100, help="Keys per page.")] = 100,
    after: Annotated[str | None, typer.Option("--after", help="Start after this key.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Follow pages to the end.")] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
    *,
    address: ScopeAddress,
) -> None:
    """List keys in code-point order."""
    scope_key = address.key()

    async def work() -> tuple[list[str], bool]:
        async with open_store(url) as store:
            keys, has_more = await store.state_list(scope_key, prefix, limit, after)
            while every and has_more and keys:
                page, has_more = await store.state_list(scope_key, prefix, limit, keys[-1])
                keys.extend(page)
            return keys, has_more

    keys, has_more = run(work)
    if as_json:
        emit_json({"scope_key": scope_key, "keys": keys, "has_more": has_more})
        return
    for key in keys:
        typer.echo(key)
    if has_more:
        typer.echo(f"... more after {keys[-1]!r} (use --after or --all)", err=True)


@app.command()
@scope_options
def snapshot(
    url: UrlOption = None,
    as_json: JsonOption = False,
    with_expiry: Annotated[
        bool,
        typer.Option(
            "--expiry",
            help='With --json: print {"snapshot": ..., "expiry": ...}, each scope\'s '
            "expires_at and expires_in beside the snapshot.",
        ),
    ] = False,
    *,
    address: ScopeAddress,
) -> None:
    """Print a snapshot: all four scopes of an identity, or one scope's entries.

    With the identity options (--runner ...) the four scopes as a host's snapshot has
    them; adding --scope prints that scope's dict alone. With --scope-key, the entries
    stored under that key.
    """
    scope_key = ""
    if address.scope_key:
        scope_key = check_scope_key_or_fail(address.scope_key)
        if address.scope:
            address.resolved_scope()  # a usage error when --scope contradicts the key
    elif address.scope:
        address.key()  # a usage error when the identity lacks the scope's id

    async def work() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        async with open_store(url) as store:
            result = await _read_snapshot(store, address, scope_key)
            keys = _snapshot_scope_keys(address, scope_key) if with_expiry else {}
            return result, await scope_deadlines(store, keys)

    result, expiry = run(work)
    if as_json and with_expiry:
        emit_json({"snapshot": result, "expiry": expiry})
    elif as_json:
        emit_json(result)
    else:
        echo_value(result)


async def _read_snapshot(store: StateStore, address: ScopeAddress, scope_key: str) -> Any:
    if scope_key:
        return await store.read_scope(scope_key)
    if address.scope:
        scope = address.resolved_scope()
        return (await store.build_snapshot_from_event(*address.snapshot_of(scope)))[scope]
    return await store.build_snapshot_from_event(
        address.event(), address.binding_model(), address.descriptor()
    )


def _snapshot_scope_keys(address: ScopeAddress, scope_key: str) -> dict[str, str]:
    """The scope keys a snapshot read, by the name ``--expiry`` reports them under: the
    scope key itself for ``--scope-key``, else the scope names."""
    if scope_key:
        return {scope_key: scope_key}
    if address.scope:
        return {address.resolved_scope(): address.key()}
    return build_state_scope_keys(address.event(), address.binding_model(), address.descriptor())


def check_scope_key_or_fail(scope_key: str) -> str:
    try:
        return check_scope_key(scope_key)
    except Refusal as refusal:
        fail(f"invalid --scope-key: {refusal}", ExitCode.USAGE)


def _register_more_commands() -> None:
    from statekit.cli import access, bench, doctor, expiry, migrate

    app.command("migrate")(migrate.migrate)
    app.command("init")(doctor.init)
    app.command("doctor")(doctor.doctor)
    app.command("bench")(bench.bench)
    app.command("sweep")(expiry.sweep)
    app.command("find")(access.find)
    app.command("export")(access.export)
    app.command("erase")(access.erase)


_register_more_commands()
