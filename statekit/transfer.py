"""Moving entries into a store: an import with the checks of a write, and the counts that
verify it. :class:`statekit.StateStore` exposes both; ``statekit migrate`` uses them."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from itertools import islice

from statekit.backends.base import Capability, StateBackend, StateEntry, StateWrite
from statekit.errors import UnsupportedCapabilityError
from statekit.validation import Refusal, check_entry, check_scope_key

_log = logging.getLogger("statekit")
#: Scopes per backend read when counting entries.
COUNT_BATCH = 100


@dataclass
class ImportResult:
    """What :meth:`StateStore.import_entries` did: entries written (or, in a dry run, that
    would be), entries refused, entries left out because their scope had expired, and how
    many entries each written scope received."""

    imported: int = 0
    skipped: int = 0
    scope_counts: dict[str, int] = field(default_factory=dict)
    expired: int = 0


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
    clock: Callable[[], float] = getattr(backend, "clock", time.time)
    async for entry in _each(entries):
        try:
            write = check_entry(entry)
        except Refusal as refusal:
            # The class only: the message, like the entry's keys, can quote personal data.
            _log.debug("import skipped an entry: reason=%s", refusal.reason)
            result.skipped += 1
            continue
        if entry.expires_at is not None:
            ttl = _remaining(backend, entry, clock)
            if ttl is None:
                result.expired += 1
                continue
            write = replace(write, ttl=ttl)
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


def _remaining(
    backend: StateBackend, entry: StateEntry, clock: Callable[[], float]
) -> float | None:
    """Seconds from now to ``entry``'s deadline, measured on the target's clock; ``None``
    once it has passed. A target without expiry could only make the scope immortal."""
    if Capability.EXPIRY not in backend.capabilities:
        raise UnsupportedCapabilityError(
            f"{type(backend).__name__} does not support expiry (Capability.EXPIRY): "
            f"the entries of scope {entry.scope_key!r} have a deadline it cannot keep"
        )
    assert entry.expires_at is not None
    remaining = entry.expires_at.timestamp() - clock()
    return remaining if remaining > 0 else None


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
