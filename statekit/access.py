"""Access and erasure requests: the scopes held about a person, a conversation, a
binding or a runner, found, exported or erased by the fields of their identity.

:class:`StoreAccess` is a base class of :class:`statekit.StateStore`; the filter rule is
:mod:`statekit.backends.identity`'s. What a filter may name is checked here, once, before
any I/O: an erase never runs on a filter that was not meant (an empty one, a misspelt
field, an id that is ``None``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import cast

from statekit.backends.base import Capability, StateEntry
from statekit.backends.identity import (
    FILTER_FIELDS,
    IDENTITY_FIELDS,
    ErasingBackend,
    ErasureResult,
    IdentityFilter,
    ScopeInfo,
)
from statekit.errors import InvalidFilterError, UnsupportedCapabilityError
from statekit.maintenance import StoreMaintenance
from statekit.scope import VALID_STATE_SCOPES
from statekit.validation import Refusal, context_text

_log = logging.getLogger("statekit")

#: A type field is only meaningful with its id: ``actor_type="user"`` alone would name
#: every user of the deployment.
_TYPED_IDS = {"actor_type": "actor_id", "subject_type": "subject_id"}


def identity_filter(identity: Mapping[str, object]) -> IdentityFilter:
    """The :class:`IdentityFilter` that ``identity`` (the keyword arguments of
    ``find_scopes``, ``export`` or ``erase``) names, or :class:`InvalidFilterError`.

    Field names must be in :data:`~statekit.backends.identity.FILTER_FIELDS`, ``scope``
    one of the four scope names; values are text (an id given as a number is its text,
    as in a write's context), never ``None`` or empty. ``actor_type`` needs ``actor_id``
    and ``subject_type`` needs ``subject_id``. At least one field besides ``scope`` is
    required, and some scope name must have every field given.
    """
    unknown = sorted(set(identity) - {*FILTER_FIELDS, "scope"})
    if unknown:
        raise InvalidFilterError(
            f"Unknown identity field {', '.join(unknown)}: "
            f"the fields are {', '.join(FILTER_FIELDS)} and scope"
        )
    scope = identity.get("scope")
    if scope is not None and scope not in VALID_STATE_SCOPES:
        raise InvalidFilterError(f"scope must be one of {', '.join(VALID_STATE_SCOPES)}")
    fields = {name: _text(name, value) for name, value in identity.items() if name != "scope"}
    if not fields:
        raise InvalidFilterError(
            "An identity filter needs at least one field besides scope: an empty filter "
            "would match every scope (clear_all() removes everything)"
        )
    for kind, id_field in _TYPED_IDS.items():
        if kind in fields and id_field not in fields:
            raise InvalidFilterError(f"{kind} filters only together with {id_field}")
    result = IdentityFilter(fields, None if scope is None else str(scope))
    if not result.scope_names():
        where = "no scope" if scope is None else f"the {scope} scope"
        raise InvalidFilterError(
            f"{where} has all of {', '.join(fields)} in its identity: "
            + "; ".join(f"{name}: {', '.join(names)}" for name, names in IDENTITY_FIELDS.items())
        )
    return result


def _text(name: str, value: object) -> str:
    """A filter value as the text stored in contexts; ``None`` and ``""`` refused."""
    try:
        text = context_text(name, value)
    except Refusal as refusal:
        raise InvalidFilterError(str(refusal)) from None
    if not isinstance(text, str) or not text:
        raise InvalidFilterError(f"{name} must be non-empty text, not {value!r}")
    return text


class StoreAccess(StoreMaintenance):
    """Base of :class:`~statekit.StateStore` (see the module docstring). Needs a backend
    with :attr:`~statekit.Capability.ERASURE`; on one without, each method raises
    :class:`~statekit.errors.UnsupportedCapabilityError` before any I/O."""

    def find_scopes(self, **identity: object) -> AsyncIterator[ScopeInfo]:
        """Every live scope whose identity has the given fields, as
        :class:`~statekit.backends.identity.ScopeInfo` (key, scope name, stored context,
        entry count), streamed in batches: memory stays bounded however many match.

        Fields: ``runner_id``, ``binding_identity``, ``bot_id``, ``workspace_id``,
        ``conversation_id``, ``thread_id``, ``actor_type`` with ``actor_id``,
        ``subject_type`` with ``subject_id``, and ``scope`` to narrow to one scope name.
        A scope matches when each field is one of its identity fields (those hashed into
        its key) and equal to it exactly: no prefix, no case folding. A writer's
        incidental context never matches: ``actor_id="u-7"`` finds u-7's actor scopes on
        every runner and binding, not the conversations u-7 took part in. Expired scopes
        are never found. A refused filter raises
        :class:`~statekit.errors.InvalidFilterError` (see :func:`identity_filter`).
        """
        backend, found = self._access(identity)
        return backend.find_scopes(found)

    def export(self, **identity: object) -> AsyncIterator[StateEntry]:
        """Without arguments, every stored entry with its context and timestamps (for
        migration and backups). With an identity filter (the fields of
        :meth:`find_scopes`), every entry of every matching scope: an access request's
        answer. Scopes are read one at a time, so memory stays bounded."""
        if not identity:
            return super().export()
        backend, found = self._access(identity)
        return _entries_of(backend, found)

    async def erase(self, *, dry_run: bool = False, **identity: object) -> ErasureResult:
        """Remove every entry of every scope the filter matches (the fields of
        :meth:`find_scopes`), with the scope's bookkeeping (context, listing index,
        deadline); returns how many scopes and entries went, and scopes per scope name.

        Each scope goes in one atomic step (a batch of scopes per transaction on SQL):
        never half-erased. Nothing written before the call started survives it; a write
        made after it returned does, in a new scope (versions from 1, no deadline). An
        empty filter is refused, never "erase everything": that is :meth:`clear_all`.
        ``dry_run`` counts what would go and removes nothing. Each erase logs one INFO
        record on the ``statekit`` logger with the filter's field names and the counts,
        never the ids (they are personal data).
        """
        backend, found = self._access(identity)
        if dry_run:
            return await _count(backend, found)
        scopes = entries = 0
        by_scope: dict[str, int] = {}
        for name in found.scope_names():
            part = await backend.erase(IdentityFilter(found.fields, name))
            scopes, entries = scopes + part.scopes, entries + part.entries
            if part.scopes:
                by_scope[name] = part.scopes
        result = ErasureResult(scopes, entries, by_scope)
        _audit(found, result)
        return result

    def _access(self, identity: Mapping[str, object]) -> tuple[ErasingBackend, IdentityFilter]:
        self._check_open()
        if Capability.ERASURE not in self._backend.capabilities:
            hint = (
                "; `statekit init` (StateStore.create_schema) adds what a table found in "
                "place lacks for it (the identity indexes)"
                if hasattr(self._backend, "upgrade_schema")
                else ""
            )
            raise UnsupportedCapabilityError(
                f"{type(self._backend).__name__} does not support erasure "
                f"(Capability.ERASURE): scopes cannot be found or erased by identity{hint}"
            )
        return cast(ErasingBackend, self._backend), identity_filter(identity)


async def _entries_of(
    backend: ErasingBackend, identity: IdentityFilter
) -> AsyncIterator[StateEntry]:
    async for info in backend.find_scopes(identity):
        for entry in await backend.scope_entries(info.scope_key):
            yield entry


async def _count(backend: ErasingBackend, identity: IdentityFilter) -> ErasureResult:
    scopes = entries = 0
    by_scope: dict[str, int] = {}
    async for info in backend.find_scopes(identity):
        scopes, entries = scopes + 1, entries + info.entries
        by_scope[info.scope] = by_scope.get(info.scope, 0) + 1
    return ErasureResult(scopes, entries, by_scope)


def _audit(identity: IdentityFilter, result: ErasureResult) -> None:
    """The erasure's audit record: which fields were filtered on and what went, and
    never a value of the filter (an id is personal data)."""
    names = sorted(identity.fields)
    _log.info(
        "erased %d scope(s) with %d entries, filtered by %s%s",
        result.scopes,
        result.entries,
        ", ".join(names),
        "" if identity.scope is None else f" (scope {identity.scope})",
        extra={
            "statekit_erasure": {
                "fields": names,
                "scope": identity.scope,
                "scopes": result.scopes,
                "entries": result.entries,
                "by_scope": dict(result.by_scope),
            }
        },
    )
