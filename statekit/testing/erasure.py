"""Erasure and access by identity (:attr:`~statekit.Capability.ERASURE`): ``find_scopes``,
``scope_entries`` and ``erase`` on the fields of a scope's identity.

Each test runs only on a backend that declares the capability. The rule under test (see
:mod:`statekit.backends.identity`): a filter matches a scope when every field it names is
one of the scope's identity fields and equal to it exactly. A test writes scopes, finds
and erases, and then checks that exactly the matching scopes went, with exact counts, and
that every other entry of the backend is exported exactly as before.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statekit.backends.base import Capability, StateBackend, StateWrite
from statekit.backends.identity import FILTER_FIELDS, IDENTITY_FIELDS, ErasingBackend
from statekit.backends.identity import IdentityFilter as Filter
from statekit.scope import VALID_STATE_SCOPES
from statekit.testing.erasure_places import (
    FIELDS,
    Place,
    as_erasing,
    base_fields,
    check_find_and_erase,
    fill,
    found,
    new_tag,
    places,
    stored,
)
from statekit.testing.erasure_race import ErasureRaceContract
from statekit.testing.isolation import NEIGHBOURS
from statekit.testing.strategies import io_examples

#: Filters of more than one field: each id with its type, and narrowing by the others.
COMBINATIONS = [
    ("actor_type", "actor_id"),
    ("subject_type", "subject_id"),
    ("conversation_id", "thread_id"),
    ("runner_id", "binding_identity"),
    ("bot_id", "workspace_id"),
    ("workspace_id", "actor_type", "actor_id"),
    ("runner_id", "binding_identity", "bot_id", "workspace_id", "subject_id"),
]
#: The fields that place an actor's scope: its workspace, bot, binding and runner.
_WHERE = ("workspace_id", "bot_id", "binding_identity", "runner_id")
_NEIGHBOUR_NAMES = sorted(set(NEIGHBOURS) - {"same"})


@pytest.mark.asyncio
class ErasureContract(ErasureRaceContract):
    """Mixin for a backend's contract test class (next to
    :class:`~statekit.testing.StateBackendContract`, whose ``backend`` fixture it uses):
    erasure and access by identity, where declared."""

    @pytest.fixture
    def erasing(self, backend: StateBackend) -> ErasingBackend:
        if Capability.ERASURE not in backend.capabilities:
            pytest.skip(f"backend does not declare {Capability.ERASURE.value}")
        return as_erasing(backend)

    # ---- which scopes match -----------------------------------------------------------

    @pytest.mark.parametrize(
        "names", [*((name,) for name in FILTER_FIELDS), *COMBINATIONS], ids="+".join
    )
    async def test_find_and_erase_by_identity_fields(
        self, erasing: ErasingBackend, names: tuple[str, ...]
    ) -> None:
        """The target's scopes match, and so do scopes that share only the filtered fields
        with it (an actor's scopes on other runners and bindings); a scope differing from
        the target in one filtered field does not, nor does an unrelated one."""
        target = base_fields(new_tag())
        other = base_fields(new_tag())
        sharing = {**other, **{name: target[name] for name in names}}
        near = [{**target, name: target[name] + "0"} for name in names]
        world = [
            place
            for fields in (target, other, sharing, *near)
            for place in places(VALID_STATE_SCOPES, fields)
        ]
        await fill(erasing, world)
        identity = Filter({name: target[name] for name in names})
        erased = await check_find_and_erase(erasing, identity, world)
        assert erased & {p.key for p in places(VALID_STATE_SCOPES, sharing)}, "none shared"

    @pytest.mark.parametrize("scope", VALID_STATE_SCOPES)
    async def test_scope_narrows_to_one_scope_name(
        self, erasing: ErasingBackend, scope: str
    ) -> None:
        fields = base_fields(new_tag())
        world = places(VALID_STATE_SCOPES, fields)
        await fill(erasing, world)
        identity = Filter({"runner_id": fields["runner_id"]}, scope=scope)
        assert await check_find_and_erase(erasing, identity, world) == {Place.of(scope, fields).key}

    async def test_a_field_outside_the_named_scopes_identity_matches_nothing(
        self, erasing: ErasingBackend
    ) -> None:
        fields = base_fields(new_tag())
        world = places(VALID_STATE_SCOPES, fields)
        await fill(erasing, world)
        before = await stored(erasing)
        for name in ("actor_id", "conversation_id", "subject_id"):
            identity = Filter({name: fields[name]}, scope="runner")
            assert await found(erasing, identity) == {}
            assert (await erasing.erase(identity)).scopes == 0
        assert await stored(erasing) == before

    @pytest.mark.parametrize(
        "name", ["conversation_id", "thread_id", "actor_id", "actor_type", "subject_id"]
    )
    async def test_a_writers_incidental_context_never_matches(
        self, erasing: ErasingBackend, name: str
    ) -> None:
        """Every scope here stores the same ten context fields, but only the scopes whose
        identity holds ``name`` go: erasing by ``conversation_id`` leaves the actor scopes
        of the people in the conversation, erasing by ``actor_id`` leaves the
        conversations they took part in."""
        fields = base_fields(new_tag())
        world = places(VALID_STATE_SCOPES, fields)
        # A second write to each scope from a writer whose incidental context differs.
        await fill(erasing, world)
        later = {**fields, **{n: f"{fields[n]}.later" for n in FIELDS}}
        for place in world:
            own = {n: fields[n] for n in IDENTITY_FIELDS[place.scope]}
            context = Place.of(place.scope, {**later, **own}).context
            await erasing.set(StateWrite(place.key, "later", "1", context))
        erased = await check_find_and_erase(erasing, Filter({name: fields[name]}), world)
        assert {p.scope for p in world if p.key in erased} == {
            scope for scope in VALID_STATE_SCOPES if name in IDENTITY_FIELDS[scope]
        }

    async def test_erasing_actor_u1_leaves_every_near_miss(self, erasing: ErasingBackend) -> None:
        """``u-1`` goes on every runner and binding; ``u-10``, ``U-1``, ``u-``, ``u-1`` of
        another actor type, and ``u-1`` narrowed to one workspace, bot, binding or runner
        leave the rest."""
        tag = new_tag()
        fields = {**base_fields(tag), "actor_id": f"{tag}.u-1", "actor_type": "user"}
        u1 = fields["actor_id"]
        misses = [
            {**fields, "actor_id": f"{tag}.u-10"},
            {**fields, "actor_id": f"{tag}.U-1"},
            {**fields, "actor_id": f"{tag}.u-"},
            {**fields, "actor_type": "bot"},
            {**fields, "actor_type": "User"},
        ]
        elsewhere = [{**fields, name: f"{fields[name]}.2"} for name in _WHERE]
        one = Place.of("actor", fields)
        others = {name: Place.of("actor", f) for name, f in zip(_WHERE, elsewhere, strict=True)}
        world = [one, *(Place.of("actor", miss) for miss in misses), *others.values()]
        await fill(erasing, world)
        for name in _WHERE:
            narrowed = Filter({"actor_type": "user", "actor_id": u1, name: fields[name]})
            erased = await check_find_and_erase(erasing, narrowed, world)
            assert erased == {one.key} | {p.key for n, p in others.items() if n != name}
            await fill(erasing, [p for p in world if p.key in erased])
        everywhere = Filter({"actor_type": "user", "actor_id": u1})
        erased = await check_find_and_erase(erasing, everywhere, world)
        assert erased == {one.key} | {p.key for p in others.values()}

    @given(
        neighbours=st.lists(st.sampled_from(_NEIGHBOUR_NAMES), min_size=1, max_size=4, unique=True),
        scopes=st.lists(
            st.tuples(
                st.sampled_from(VALID_STATE_SCOPES),
                st.lists(st.sampled_from([0, 0, 0, 1, 2, 3, 4]), min_size=10, max_size=10),
            ),
            min_size=1,
            max_size=12,
        ),
        names=st.sets(st.sampled_from(FILTER_FIELDS), min_size=1, max_size=3),
        scope=st.none() | st.sampled_from(VALID_STATE_SCOPES),
    )
    @io_examples
    async def test_erasure_is_exact_among_adversarial_identities(
        self,
        erasing: ErasingBackend,
        neighbours: list[str],
        scopes: list[tuple[str, list[int]]],
        names: set[str],
        scope: str | None,
    ) -> None:
        """Scopes whose every field is the target's value or one a leaky backend would
        confuse with it (the isolation suite's neighbours: extended, truncated, other
        case, wildcards, accents...): erasing by the target's values removes exactly the
        scopes the rule names, and every other entry stays byte-for-byte equal."""
        target = base_fields(new_tag())
        variants = [NEIGHBOURS[name] for name in neighbours]

        def value(name: str, index: int) -> str:
            pool = [target[name], *(make(target[name]) for make in variants)]
            return pool[index % len(pool)]

        world = [
            Place.of(
                name,
                {field: value(field, i) for field, i in zip(FIELDS, picks, strict=True)},
            )
            for name, picks in scopes
        ]
        await fill(erasing, world, count=1)
        identity = Filter({name: target[name] for name in sorted(names)}, scope=scope)
        await check_find_and_erase(erasing, identity, world)

    # ---- what a find reports, what an erase removes ------------------------------------

    async def test_find_reports_key_name_identity_and_entry_count(
        self, erasing: ErasingBackend
    ) -> None:
        fields = base_fields(new_tag())
        conversation, actor = places(["conversation", "actor"], fields)
        await erasing.set_many(conversation.writes(3) + actor.writes(1))
        hits = await found(erasing, Filter({"workspace_id": fields["workspace_id"]}))
        assert {key: (i.scope, i.entries) for key, i in hits.items()} == {
            conversation.key: ("conversation", 3),
            actor.key: ("actor", 1),
        }
        assert hits[actor.key].context.actor_id == fields["actor_id"]

    async def test_scope_entries_are_what_the_export_holds_for_the_scope(
        self, erasing: ErasingBackend
    ) -> None:
        fields = base_fields(new_tag())
        one, two = places(["subject", "runner"], fields)
        await fill(erasing, [one, two], count=3)
        exported = await stored(erasing)
        entries = await erasing.scope_entries(one.key)
        assert {(e.scope_key, e.state_key): e for e in entries} == {
            k: e for k, e in exported.items() if k[0] == one.key
        }
        assert len(entries) == 3
        assert await erasing.scope_entries(Place.of("actor", fields).key) == []
        await erasing.erase(Filter({"subject_id": fields["subject_id"]}))
        assert await erasing.scope_entries(one.key) == []
        assert len(await erasing.scope_entries(two.key)) == 3

    async def test_a_filter_matching_nothing_erases_nothing(self, erasing: ErasingBackend) -> None:
        fields = base_fields(new_tag())
        world = places(VALID_STATE_SCOPES, fields)
        await fill(erasing, world)
        nobody = Filter({"actor_id": fields["actor_id"] + "0", "actor_type": fields["actor_type"]})
        assert await check_find_and_erase(erasing, nobody, world) == set()
        assert (await erasing.erase(nobody)).scopes == 0
