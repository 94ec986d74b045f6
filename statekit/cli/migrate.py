"""``statekit migrate``: copy every entry, with its context, from one backend to another.

A live scope keeps its deadline in the target (which must then support expiry); an
expired one is not copied.

The source is streamed (``StateStore.export()``) into the target's
``StateStore.import_entries``, which checks each entry as a write and writes in batches,
so memory stays bounded by the batch and by one counter per scope. Writes are upserts: a
re-run after an interruption copies the same entries again, harmlessly. At the end the
target's entry count of every copied scope (``StateStore.count_entries``) must equal the
source's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from statekit.backends.base import StateEntry
from statekit.cli.options import JsonOption, echo, rich_console
from statekit.cli.runtime import ExitCode, emit_json, fail, run
from statekit.connection import connect, load_settings
from statekit.store import ImportResult, StateStore
from statekit.url import BackendURL


@dataclass
class MigrationReport:
    source: str
    target: str
    dry_run: bool
    copied: ImportResult = field(default_factory=ImportResult)
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "dry_run": self.dry_run,
            "entries": self.copied.imported,
            "scopes": len(self.copied.scope_counts),
            "skipped_invalid": self.copied.skipped,
            "skipped_expired": self.copied.expired,
            "verified": not self.dry_run and not self.mismatches,
            "mismatches": self.mismatches[:20],
        }


async def _advancing(
    entries: AsyncIterator[StateEntry], advance: Callable[[int], None]
) -> AsyncIterator[StateEntry]:
    async for entry in entries:
        yield entry
        advance(1)


async def copy_entries(
    source: StateStore,
    target: StateStore,
    report: MigrationReport,
    batch_size: int,
    advance: Callable[[int], None] = lambda _: None,
) -> None:
    """Stream ``source`` into ``target`` (nothing written when ``report.dry_run``)."""
    report.copied = await target.import_entries(
        _advancing(source.export(), advance), batch_size=batch_size, dry_run=report.dry_run
    )


async def check_counts(target: StateStore, report: MigrationReport) -> None:
    """Record every copied scope whose entry count in ``target`` differs from the source's."""
    expected = report.copied.scope_counts
    found = await target.count_entries(expected)
    for scope_key, count in expected.items():
        if found[scope_key] != count:
            report.mismatches.append(
                {"scope_key": scope_key, "source": count, "target": found[scope_key]}
            )


async def migrate_urls(
    source_url: str | BackendURL,
    target_url: str,
    *,
    dry_run: bool,
    batch_size: int,
    show_progress: bool,
) -> MigrationReport:
    source_parsed, target_parsed = BackendURL(source_url), BackendURL(target_url)
    if source_parsed == target_parsed:
        fail("--from and --to are the same store", ExitCode.USAGE)
    report = MigrationReport(str(source_parsed), str(target_parsed), dry_run)
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    err_console = rich_console(stderr=True)
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
    entries, scopes = report.copied.imported, len(report.copied.scope_counts)
    if report.dry_run:
        echo(
            f"dry run: would copy {entries} entries in {scopes} scopes "
            f"from {report.source} to {report.target}; nothing written"
        )
    else:
        echo(f"copied {entries} entries in {scopes} scopes from {report.source} to {report.target}")
    if report.copied.skipped:
        echo(
            f"skipped {report.copied.skipped} entries that the store would refuse "
            "(invalid key, context or JSON)"
        )
    if report.copied.expired:
        echo(f"left out {report.copied.expired} entries whose scope expired during the copy")
    if report.mismatches:
        typer.echo(
            f"statekit: error: count check failed in {len(report.mismatches)} scopes, "
            f"e.g. {report.mismatches[0]}",
            err=True,
        )
    elif not report.dry_run:
        echo("count check: ok (every copied scope has the same number of entries)")
