"""The records statekit writes (docs/logging.md): one DEBUG record per refusal on
``statekit`` holding its class, one WARNING per backend fault on ``statekit.redis`` or
``statekit.sql`` holding the error class, the operation and ``host:port``; never a key,
a value or a password. Real servers, real closed ports, the real logging module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statekit import MemoryBackend, StateStore, connect
from statekit.errors import StateBackendError
from statekit.testing import new_identity
from statekit.testing.identities import put
from statekit.validation import REFUSAL_REASONS

PASSWORD = "Pw9sekrit"


def _free_closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def debug_records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record on ``statekit`` and below, DEBUG included (``.records``)."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="statekit"):
        yield caplog


def _ours(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.name == "statekit" or r.name.startswith("statekit.")]


# Keys a naive record would quote: long, odd and refused (control characters).
hostile_keys = st.text(min_size=6, max_size=40).map(lambda text: f"K\x00{text}")


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=hostile_keys, value=st.text(min_size=6, max_size=20))
async def test_a_refusal_is_one_debug_record_with_its_class_and_no_key(
    caplog: pytest.LogCaptureFixture, key: str, value: str
) -> None:
    store = StateStore(MemoryBackend())
    ident = new_identity()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="statekit"):
        ok, message = await store.apply_update_from_event(
            ident.event, ident.binding, ident.descriptor, "conversation", key, value
        )
    assert not ok
    assert message is not None
    records = _ours(caplog.records)
    assert [(r.name, r.levelno) for r in records] == [("statekit", logging.DEBUG)]
    record = records[0]
    assert record.statekit_reason == "key"  # type: ignore[attr-defined]
    assert record.statekit_reason in REFUSAL_REASONS  # type: ignore[attr-defined]
    text = logging.Formatter("%(message)s %(args)s").format(record) + repr(record.__dict__)
    assert "reason=key" in text
    assert "scope=conversation" in text
    for secret in (key, key[2:], value, ident.scope_key()):
        assert secret not in text


async def test_a_refused_value_names_its_class_and_an_unknown_scope_is_not_quoted(
    debug_records: pytest.LogCaptureFixture,
) -> None:
    store = StateStore(MemoryBackend())
    ident = new_identity()
    await put(store, ident, "k", {1, 2})  # a set is not JSON
    await store.apply_update_from_event(
        ident.event, ident.binding, ident.descriptor, "scope-Xq7", "k", 1
    )
    reasons = [(r.statekit_reason, r.statekit_scope) for r in _ours(debug_records.records)]  # type: ignore[attr-defined]
    assert reasons == [("value", "conversation"), ("scope", None)]
    assert all("Xq7" not in r.getMessage() for r in debug_records.records)


async def test_a_hosts_logger_receives_the_refusal_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = logging.getLogger("host.app")
    store = StateStore(MemoryBackend())
    ident = new_identity()
    with caplog.at_level(logging.DEBUG, logger="host.app"):
        ok, _ = await store.apply_update_from_event(
            ident.event, ident.binding, ident.descriptor, "conversation", "", 1, host
        )
        await store.state_set(ident.scope_key(), "", 1, "r", "b", "conversation", None, host)
    assert not ok
    records = [r for r in caplog.records if r.name == "host.app"]
    assert [r.statekit_reason for r in records] == ["key", "key"]  # type: ignore[attr-defined]
    assert [r.statekit_operation for r in records] == [  # type: ignore[attr-defined]
        "apply_update_from_event",
        "state_set",
    ]


async def test_no_refusal_record_is_built_when_debug_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = StateStore(MemoryBackend())
    ident = new_identity()
    with caplog.at_level(logging.INFO, logger="statekit"):
        ok, _ = await put(store, ident, "", 1)
    assert not ok
    assert _ours(caplog.records) == []


def _fault_urls(tmp_path: Path) -> list[tuple[str, str, str | None]]:
    port = _free_closed_port()
    # A file where the database's directory should be: unwritable whoever runs the test.
    locked = tmp_path / "not-a-directory"
    locked.write_text("")
    return [
        (f"redis://:{PASSWORD}@127.0.0.1:{port}/2", "statekit.redis", f"127.0.0.1:{port}"),
        (
            f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:{port}/test",
            "statekit.sql",
            f"127.0.0.1:{port}",
        ),
        (f"sqlite+aiosqlite:///{locked}/state.db", "statekit.sql", None),
    ]


@pytest.mark.parametrize("case", [0, 1, 2], ids=["redis", "postgresql", "sqlite"])
async def test_a_backend_fault_is_one_warning_on_its_backends_logger(
    tmp_path: Path, debug_records: pytest.LogCaptureFixture, case: int
) -> None:
    url, logger_name, address = _fault_urls(tmp_path)[case]
    store = connect(url, timeout=1, connect_timeout=1)
    try:
        with pytest.raises(StateBackendError) as raised:
            await store.state_get("runner:v2:x", "k")
    finally:
        await store.aclose()
    warnings = [r for r in _ours(debug_records.records) if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelno) for r in warnings] == [(logger_name, logging.WARNING)]
    record = warnings[0]
    assert record.statekit_error == type(raised.value).__name__  # type: ignore[attr-defined]
    assert record.statekit_server == address  # type: ignore[attr-defined]
    for shown in _ours(debug_records.records):
        text = logging.Formatter("%(name)s %(message)s").format(shown)
        assert PASSWORD not in text
        assert "runner:v2:x" not in text
