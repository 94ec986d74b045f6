"""StateStore behaviour that does not depend on the backend: lifecycle, singleton, duck typing."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import pytest

import statekit
from statekit import MemoryBackend, StateStore, get_state_store, reset_state_store
from statekit.testing import new_identity


def test_public_names_are_exported() -> None:
    public = {name for name in dir(statekit) if not name.startswith("_")}
    modules = {
        "backends",
        "cli",
        "compat",
        "connection",
        "errors",
        "models",
        "scope",
        "settings",
        "store",
        "url",
        "validation",
        "testing",
    }
    assert set(statekit.__all__) - {"__version__"} == public - modules


async def test_store_closes_its_backend_on_exit() -> None:
    closed = []

    class Tracked(MemoryBackend):
        async def aclose(self) -> None:
            closed.append(True)

    async with StateStore(Tracked()) as store:
        assert isinstance(store.backend, Tracked)
    assert closed == [True]


def test_process_wide_store_is_created_once_across_threads() -> None:
    reset_state_store()
    try:
        with pytest.raises(RuntimeError, match="backend is required"):
            get_state_store()
        seen: list[StateStore] = []
        threads = [
            threading.Thread(target=lambda: seen.append(get_state_store(MemoryBackend())))
            for _ in range(16)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len({id(store) for store in seen}) == 1
        assert get_state_store() is seen[0]
    finally:
        reset_state_store()


async def test_host_objects_work_by_duck_typing() -> None:
    ident = new_identity()
    event = SimpleNamespace(
        bot_id=ident.event.bot_id,
        workspace_id=ident.event.workspace_id,
        conversation_id=ident.event.conversation_id,
        thread_id=None,
        actor=SimpleNamespace(
            actor_type="user", actor_id=ident.event.actor.actor_id if ident.event.actor else None
        ),
        subject=None,
    )
    binding = SimpleNamespace(
        binding_id=ident.binding.binding_id,
        scope=None,
        state_policy=SimpleNamespace(enable_state=True, state_scopes=["conversation", "actor"]),
    )
    runner = SimpleNamespace(id=ident.descriptor.id)
    store = StateStore(MemoryBackend())
    assert await store.apply_update_from_event(event, binding, runner, "actor", "k", 1) == (
        True,
        None,
    )
    # The pydantic models of the same identity address the same scope.
    assert await store.state_get(ident.scope_key("actor"), "k") == 1
    snapshot = await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    assert snapshot["actor"] == {"k": 1}


async def test_refusals_are_logged_on_the_given_logger(caplog: pytest.LogCaptureFixture) -> None:
    ident = new_identity()
    logger = logging.getLogger("host.state")
    store = StateStore(MemoryBackend())
    with caplog.at_level(logging.DEBUG, logger="host.state"):
        ok, error = await store.apply_update_from_event(
            ident.event, ident.binding, ident.descriptor, "global", "k", 1, logger=logger
        )
    assert (ok, error) == (False, "Invalid scope: global")
    assert [r.name for r in caplog.records] == ["host.state"]
    assert "Invalid scope: global" in caplog.records[0].getMessage()


async def test_invalid_json_stored_outside_statekit_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ident = new_identity()
    backend = MemoryBackend()
    store = StateStore(backend)
    await store.apply_update_from_event(
        ident.event, ident.binding, ident.descriptor, "actor", "ok", 1
    )
    await backend.set(
        ident.scope_key("actor"), "bad", "{not json", statekit.ScopeContext("r", "b", "actor")
    )
    with caplog.at_level(logging.WARNING, logger="statekit"):
        snapshot = await store.build_snapshot_from_event(
            ident.event, ident.binding, ident.descriptor
        )
        assert await store.state_get(ident.scope_key("actor"), "bad") is None
    assert snapshot["actor"] == {"ok": 1}
    assert any("undecodable JSON" in r.getMessage() for r in caplog.records)


async def test_disabled_policy_snapshot_does_no_io() -> None:
    class Exploding(MemoryBackend):
        async def read_scopes(self, scope_keys):  # type: ignore[no-untyped-def]
            raise AssertionError("no read expected")

    ident = new_identity(enable_state=False)
    store = StateStore(Exploding())
    snapshot = await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    assert snapshot == {"conversation": {}, "actor": {}, "subject": {}, "runner": {}}
