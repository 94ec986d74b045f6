"""No span or metric attribute ever holds a value, an id, a key or a password.

The rule is checked from the other side too: every text attribute recorded is one of
the words telemetry may use (operation and scope names, refusal reasons, error class
names, the backend's engine, host and database), whatever the input.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telemetry_support import Observed

import statekit
from statekit import StateStore
from statekit.scope import VALID_STATE_SCOPES
from statekit.telemetry.instrument import _READS, _REMOVALS, _STREAMS, _WRITES
from statekit.validation import REFUSAL_REASONS

OPERATIONS = {name for name, _ in [*_READS.values(), *_WRITES.values(), *_REMOVALS.values()]}
VOCABULARY = (
    OPERATIONS
    | set(_STREAMS.values())
    | set(VALID_STATE_SCOPES)
    | set(REFUSAL_REASONS)
    | {"other", "redis", "pipeline", "coalesced", "used", "idle", "127.0.0.1", "3"}
)
adversarial = st.text(min_size=1, max_size=40) | st.sampled_from(
    ["actor:v2:00ff", "postgres://u:pw@h/db", "' OR 1=1 --", "\x00", "ü" * 30, "hunter2"]
)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | adversarial,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(adversarial, inner, max_size=3),
    max_leaves=6,
)


def _check(attributes: list[dict[str, Any]], secrets: list[str]) -> None:
    for recorded in attributes:
        for name, value in recorded.items():
            texts = value if isinstance(value, tuple | list) else [value]
            for text in texts:
                if isinstance(text, str):
                    assert text in VOCABULARY or name == "error.type", (name, text)
                    assert text.endswith(("Error", "Exception")) or name != "error.type"
    flat = repr(attributes)
    for secret in secrets:
        if len(secret) >= 6 and secret not in VOCABULARY:
            assert secret not in flat


async def _exercise(store: StateStore, ids: list[str], key: str, value: object) -> None:
    scope_key = f"actor:v2:{ids[0]}"
    await store.state_set(scope_key, key, value, ids[1], ids[2], "actor", {"actor_id": ids[3]})
    await store.state_set(ids[0], key, value, ids[1], ids[2], ids[3])
    await store.state_get(scope_key, key)
    await store.state_get_versioned(ids[0], key)
    await store.state_list(scope_key, prefix=key)
    await store.state_delete(ids[0], key)
    with pytest.raises(statekit.InvalidFilterError):
        await store.erase(**{ids[4] or "x": ids[1], "runner_id": None})  # type: ignore[arg-type]
    await store.erase(runner_id=ids[1], actor_id=ids[3], actor_type="user", dry_run=True)
    [entry async for entry in store.export(runner_id=ids[1])]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=st.lists(adversarial, min_size=5, max_size=5), key=adversarial, value=values)
def test_no_attribute_holds_input(ids: list[str], key: str, value: object) -> None:
    observed = Observed()
    store = StateStore(statekit.MemoryBackend(), telemetry=observed.telemetry)
    asyncio.run(_exercise(store, ids, key, value))
    _check(observed.all_attributes(), [*ids, key, repr(value)])


@pytest.mark.parametrize(
    "url",
    [
        "redis://statekit:hunter2-secret@127.0.0.1:1/3",
        "postgresql+asyncpg://statekit:hunter2-secret@127.0.0.1:1/test",
    ],
)
async def test_a_password_in_the_url_is_never_recorded(url: str) -> None:
    observed = Observed()
    async with statekit.connect(url, telemetry=observed.telemetry, connect_timeout=0.5) as store:
        with pytest.raises(statekit.BackendUnavailableError):
            await store.state_get("actor:v2:00", "k")
    attributes = observed.all_attributes()
    assert attributes
    assert "hunter2" not in repr(attributes)
    assert "statekit" not in {str(value) for recorded in attributes for value in recorded.values()}
