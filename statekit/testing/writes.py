"""Writes: delete, concurrent upserts, timestamps, the stored context, batches, clearing."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import timezone

from statekit.scope import build_state_scope_key
from statekit.store import StateStore, StateUpdate
from statekit.testing.identities import Identity, new_identity, put, scope_entries


class WritesContract:
    """Mixin of :class:`~statekit.testing.StateBackendContract`: what a write leaves stored."""

    async def test_delete_reports_whether_the_key_existed(
        self, store: StateStore, ident: Identity
    ) -> None:
        await put(store, ident, "k", 1)
        assert await store.state_delete(ident.scope_key(), "k") is True
        assert await store.state_delete(ident.scope_key(), "k") is False
        assert await store.state_get(ident.scope_key(), "k") is None
        assert await store.state_delete(ident.scope_key(), "never") is False

    async def test_concurrent_first_writes_all_succeed_and_one_wins(
        self, store: StateStore, ident: Identity
    ) -> None:
        results = await asyncio.gather(*(put(store, ident, "race", i) for i in range(20)))
        assert results == [(True, None)] * 20
        assert await store.state_get(ident.scope_key(), "race") in range(20)
        assert await store.state_list(ident.scope_key()) == (["race"], False)

    async def test_update_keeps_created_at_and_moves_updated_at(
        self, store: StateStore, ident: Identity
    ) -> None:
        await put(store, ident, "k", 1)
        first = (await scope_entries(store, ident.scope_key()))["k"]
        await asyncio.sleep(0.01)
        await put(store, ident, "k", 2)
        second = (await scope_entries(store, ident.scope_key()))["k"]
        assert first.created_at.tzinfo is not None
        assert first.created_at.utcoffset() == timezone.utc.utcoffset(None)
        assert second.created_at == first.created_at
        assert second.updated_at > first.updated_at
        assert json.loads(second.value_json) == 2

    async def test_export_carries_the_scope_context(
        self, store: StateStore, ident: Identity
    ) -> None:
        await store.apply_update_from_event(
            ident.event, ident.binding, ident.descriptor, "actor", "k", [1]
        )
        (entry,) = (await scope_entries(store, ident.scope_key("actor"))).values()
        ctx = entry.context
        assert (ctx.runner_id, ctx.binding_identity, ctx.scope) == (
            ident.runner_id,
            ident.binding_identity,
            "actor",
        )
        assert (ctx.bot_id, ctx.workspace_id) == ("bot-1", "ws-1")
        assert (ctx.actor_type, ctx.actor_id) == (
            "user",
            ident.event.actor.actor_id if ident.event.actor else None,
        )
        assert ctx.conversation_id == ident.event.conversation_id
        assert (ctx.subject_type, ctx.subject_id) == (
            "ticket",
            ident.event.subject.subject_id if ident.event.subject else None,
        )
        assert json.loads(entry.value_json) == [1]

    async def test_context_keeps_the_scope_identity_whoever_writes(
        self, store: StateStore, ident: Identity
    ) -> None:
        """Two conversations of one actor write to the same actor scope.

        The fields hashed into the scope key agree for every entry; a field outside it (the
        conversation, for an actor scope) comes whole from one of the writes: the entry's
        first write on some backends, the scope's first write on others.
        """
        elsewhere = ident.event.model_copy(update={"conversation_id": "conv-elsewhere"})
        assert build_state_scope_key(
            "actor", elsewhere, ident.binding, ident.descriptor
        ) == ident.scope_key("actor")
        for event, key in ((ident.event, "first"), (elsewhere, "second")):
            ok = await store.apply_update_from_event(
                event, ident.binding, ident.descriptor, "actor", key, key
            )
            assert ok == (True, None)
        entries = await scope_entries(store, ident.scope_key("actor"))
        assert sorted(entries) == ["first", "second"]
        actor = ident.event.actor
        subject = ident.event.subject
        assert actor is not None
        assert subject is not None
        for entry in entries.values():
            ctx = entry.context
            assert (ctx.runner_id, ctx.binding_identity, ctx.scope) == (
                ident.runner_id,
                ident.binding_identity,
                "actor",
            )
            assert (ctx.bot_id, ctx.workspace_id, ctx.actor_type, ctx.actor_id) == (
                "bot-1",
                "ws-1",
                "user",
                actor.actor_id,
            )
            assert (ctx.conversation_id, ctx.subject_id) in {
                (ident.event.conversation_id, subject.subject_id),
                ("conv-elsewhere", subject.subject_id),
            }

    async def test_state_set_stores_the_given_context(
        self, store: StateStore, ident: Identity
    ) -> None:
        ok = await store.state_set(
            ident.scope_key(),
            "k",
            1,
            "r-1",
            "b-1",
            "conversation",
            context={"bot_id": "bot-9", "thread_id": "t-1"},
        )
        assert ok == (True, None)
        (entry,) = (await scope_entries(store, ident.scope_key())).values()
        assert entry.context.as_dict() == {
            "runner_id": "r-1",
            "binding_identity": "b-1",
            "scope": "conversation",
            "bot_id": "bot-9",
            "workspace_id": None,
            "conversation_id": None,
            "thread_id": "t-1",
            "actor_type": None,
            "actor_id": None,
            "subject_type": None,
            "subject_id": None,
        }

    async def test_batch_applies_valid_updates_and_reports_refusals_by_index(
        self, store: StateStore, ident: Identity
    ) -> None:
        results = await store.apply_updates_from_event(
            ident.event,
            ident.binding,
            ident.descriptor,
            [
                StateUpdate("conversation", "a", 1),
                ("actor", "b", math.nan),
                {"scope": "global", "key": "c", "value": 3},
                ("runner", "d", 4),
                ("conversation", "a", 5),
                ("subject", "", 6),
            ],
        )
        assert results[0] == (True, None)
        assert results[3] == (True, None)
        assert results[4] == (True, None)
        assert results[1][0] is False
        assert str(results[1][1]).startswith("Value is not JSON-serializable")
        assert results[2] == (False, "Invalid scope: global")
        assert results[5][0] is False
        assert await store.state_get(ident.scope_key(), "a") == 5
        assert await store.state_get(ident.scope_key("runner"), "d") == 4
        assert await store.state_get(ident.scope_key("actor"), "b") is None

    async def test_clear_all_removes_every_entry(self, store: StateStore) -> None:
        idents = [new_identity() for _ in range(3)]
        for ident in idents:
            await store.apply_update_from_event(
                ident.event, ident.binding, ident.descriptor, "conversation", "k", 1
            )
            await store.apply_update_from_event(
                ident.event, ident.binding, ident.descriptor, "runner", "k", 1
            )
        await store.clear_all()
        for ident in idents:
            assert await store.state_get(ident.scope_key(), "k") is None
            assert await store.state_list(ident.scope_key("runner")) == ([], False)
        assert [e async for e in store.export()] == []
