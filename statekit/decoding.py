"""Stored JSON text back to values, for the store's readers.

Rows written outside statekit may hold invalid JSON (or JSON nested deeper than statekit
accepts); the original store skipped them, and so does statekit, loudly: a warning on
the ``statekit`` logger says so, naming neither the value nor the key nor the scope key
(a key can be personal data, a scope key holds ids).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from statekit.validation import decode_value

_log = logging.getLogger("statekit")


def decode_stored(scope_key: str, state_key: str, value_json: str) -> Any:
    """The value of one stored entry; ``None`` (with a warning) when it is undecodable."""
    try:
        return decode_value(value_json)
    except (ValueError, RecursionError):
        _skipped()
        return None


def decode_scope(scope_key: str, entries: Mapping[str, str]) -> dict[str, Any]:
    """The values of a scope's entries, in their order; undecodable ones left out."""
    decoded: dict[str, Any] = {}
    # One call per value, not three: a snapshot decodes every value of four scopes.
    for state_key, value_json in entries.items():
        try:
            decoded[state_key] = decode_value(value_json)
        except (ValueError, RecursionError):
            _skipped()
    return decoded


def _skipped() -> None:
    _log.warning("skipped a stored value: undecodable JSON (invalid or nested too deep)")
