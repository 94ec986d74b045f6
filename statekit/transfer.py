"""Moving entries into a store: an import with the checks of a write, and the counts that
verify it. :class:`statekit.StateStore` exposes both; ``statekit migrate`` uses them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from itertools import islice

from statekit.backends.base import StateBackend, StateEntry, StateWrite
from statekit.validation import Refusal, check_entry, check_scope_key

_log = logging.getLogger("statekit")
#: Scopes per backend read when counting entries.
COUNT_BATCH = 100


@dataclass
class ImportResult:
    """What :meth:`StateStore.import_entries` did: entries written (or, in a dry run, that
    would be), entries refused, and how many entries each written scope received."""

    imported: int = 0
    skipped: int = 0
    scope_counts: dict[str, int] = field(default_factory=dict)


async def import_entries(
    backend: StateBackend,
    entries: AsyncIterable[StateEntry] | Iterable[StateEntry],
    batch_size: int,
    dry_run: bool,
) -> ImportResult:
    """See :meth:`StateStore.import_entries`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    result = ImportResult()
    batch: list[StateWrite] = []
    async for entry in _each(entries):
        try:
            write = check_entry(entry)
        except Refusal as refusal:
            _log.debug("import skipped %s / %r: %s", entry.scope_key, entry.state_key, refusal)
            result.skipped += 1
            continue
        result.imported += 1
        counts = result.scope_counts
        counts[write.scope_key] = counts.get(write.scope_key, 0) + 1
        if not dry_run:
            batch.append(write)
            if len(batch) >= batch_size:
                await backend.set_many(batch)
                batch = []
    if batch:
        await backend.set_many(batch)
    return result


async def count_entries(backend: StateBackend, scope_keys: Iterable[str]) -> dict[str, int]:
    """See :meth:`StateStore.count_entries`."""
    counts: dict[str, int] = {}
    valid: list[str] = []
    for scope_key in scope_keys:
        try:
            valid.append(check_scope_key(scope_key))
        except Refusal:
            counts[scope_key] = 0
    keys = iter(dict.fromkeys(valid))
    while chunk := list(islice(keys, COUNT_BATCH)):
        stored = await backend.read_scopes(chunk)
        counts.update((key, len(stored.get(key, {}))) for key in chunk)
    return counts


async def _each(
    entries: AsyncIterable[StateEntry] | Iterable[StateEntry],
) -> AsyncIterator[StateEntry]:
    if isinstance(entries, AsyncIterable):
        async for entry in entries:
            yield entry
    else:
        for entry in entries:
            yield entry
