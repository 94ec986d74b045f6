"""``statekit migrate``: copy every entry, with its context, from one backend to another.

The source is streamed (``StateStore.export()``) and written in batches with the target's
``set_many``, so memory stays bounded by the batch and by one counter per scope. Writes
are upserts: a re-run after an interruption copies the same entries again, harmlessly.
At the end the target's entry count of every copied scope must equal the source's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from statekit.backends.base import StateEntry, StateWrite
from statekit.cli.options import JsonOption, console, err_console
from statekit.cli.runtime import ExitCode, emit_json, fail, run
from statekit.connection import connect, load_settings
from statekit.store import StateStore
from statekit.url import BackendURL
from statekit.validation import Refusal, check_scope_key, check_state_key, decode_value
from statekit.validation import encode_value as encode

#: Scope keys per ``read_scopes`` call while checking counts.
CHECK_BATCH = 100


@dataclass
class MigrationReport:
    source: str
    target: str
    dry_run: bool
    entries: int = 0
    skipped: int = 0
    scope_counts: dict[str, int] = field(default_factory=dict)
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "dry_run": self.dry_run,
            "entries": self.entries,
            "scopes": len(self.scope_counts),
            "skipped_invalid": self.skipped,
            "verified": not self.dry_run and not self.mismatches,
            "mismatches": self.mismatches[:20],
        }


def _write_of(entry: StateEntry) -> StateWrite:
    """The entry as the store would write it; :class:`Refusal` if it could not be."""
    scope_key = check_scope_key(entry.scope_key)
    state_key = check_state_key(entry.state_key)
    try:
        value = decode_value(entry.value_json)
    except ValueError as exc:
        raise Refusal(f"stored value is not valid JSON: {exc}") from exc
    return StateWrite(scope_key, state_key, encode(value), entry.context)


async def copy_entries(
    source: StateStore,
    target: StateStore,
    report: MigrationReport,
    batch_size: int,
    advance: Callable[[int], None] = lambda _: None,
) -> None:
    """Stream ``source`` into ``target`` (nothing written when ``report.dry_run``)."""
    batch: list[StateWrite] = []
    async for entry in source.export():
        try:
            write = _write_of(entry)
        except Refusal:
            report.skipped += 1
            continue
        report.entries += 1
        report.scope_counts[write.scope_key] = report.scope_counts.get(write.scope_key, 0) + 1
        if not report.dry_run:
            batch.append(write)
            if len(batch) >= batch_size:
                await target.backend.set_many(batch)
                batch = []
        advance(1)
    if batch:
        await target.backend.set_many(batch)


async def check_counts(target: StateStore, report: MigrationReport) -> None:
    """Record every copied scope whose entry count in ``target`` differs from the source's."""
    scope_keys = list(report.scope_counts)
    for start in range(0, len(scope_keys), CHECK_BATCH):
        chunk = scope_keys[start : start + CHECK_BATCH]
        stored = await target.backend.read_scopes(chunk)
        for scope_key in chunk:
            found = len(stored.get(scope_key, {}))
            expected = report.scope_counts[scope_key]
            if found != expected:
                report.mismatches.append(
                    {"scope_key": scope_key, "source": expected, "target": found}
                )


async def migrate_urls(
    source_url: str, target_url: str, *, dry_run: bool, batch_size: int, show_progress: bool
) -> MigrationReport:
    source_parsed, target_parsed = BackendURL(source_url), BackendURL(target_url)
    if source_parsed == target_parsed:
        fail("--from and --to are the same store", ExitCode.USAGE)
    report = MigrationReport(str(source_parsed), str(target_parsed), dry_run)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} entries"),
        TimeElapsedColumn(),
        console=err_console,
        disable=not (show_progress and err_console.is_terminal),
        transient=True,
    )
    verb = "Reading" if dry_run else "Copying"
    async with connect(source_parsed) as source, connect(target_parsed) as target:
        with progress:
            task = progress.add_task(
                f"{verb} {source_parsed.scheme} -> {target_parsed.scheme}", total=None
            )
            await copy_entries(
                source, target, report, batch_size, lambda n: progress.advance(task, n)
            )
        if not dry_run:
            await check_counts(target, report)
    return report


def migrate(
    from_url: Annotated[
        str | None,
        typer.Option(
            "--from",
            "--url",
            help="Source URL (default: STATEKIT_URL, else the embedded SQLite file).",
            show_default=False,
        ),
    ] = None,
    to_url: Annotated[str, typer.Option("--to", help="Target URL.", show_default=False)] = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and count the source; write nothing.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="Entries per target write.")
    ] = 500,
    as_json: JsonOption = False,
) -> None:
    """Copy every entry with its context to another backend, then check the counts."""
    if not to_url:
        fail("--to is required", ExitCode.USAGE)

    async def work() -> MigrationReport:
        source = from_url if from_url is not None else load_settings().url
        return await migrate_urls(
            source, to_url, dry_run=dry_run, batch_size=batch_size, show_progress=not as_json
        )

    report = run(work)
    if as_json:
        emit_json(report.as_dict())
    else:
        _print(report)
    if report.mismatches:
        raise typer.Exit(ExitCode.CHECK_FAILED)


def _print(report: MigrationReport) -> None:
    scopes = len(report.scope_counts)
    if report.dry_run:
        console.print(
            f"dry run: would copy {report.entries} entries in {scopes} scopes "
            f"from {report.source} to {report.target}; nothing written"
        )
    else:
        console.print(
            f"copied {report.entries} entries in {scopes} scopes "
            f"from {report.source} to {report.target}"
        )
    if report.skipped:
        console.print(
            f"skipped {report.skipped} entries that the store would refuse (invalid key or JSON)"
        )
    if report.mismatches:
        typer.echo(
            f"statekit: error: count check failed in {len(report.mismatches)} scopes, "
            f"e.g. {report.mismatches[0]}",
            err=True,
        )
    elif not report.dry_run:
        console.print("count check: ok (every copied scope has the same number of entries)")
