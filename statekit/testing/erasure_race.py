"""Erasure, continued: what an erase leaves behind, expired scopes, many scopes, and
writers racing an erase. Part of :class:`~statekit.testing.ErasureContract`, whose
``erasing`` fixture these tests use."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from statekit.backends.base import Capability, StateWrite
from statekit.backends.identity import ErasingBackend, ErasureResult
from statekit.backends.identity import IdentityFilter as Filter
from statekit.testing.clocks import expiry_time_of, retry_too_late
from statekit.testing.erasure_places import Place, base_fields, fill, found, new_tag, stored
from statekit.testing.expiry_checks import as_expiring

#: More scopes than any backend's batch, so ``find_scopes`` has to stream.
MANY_SCOPES = 250


@dataclass
class _Writer:
    """One writer's record: the keys it wrote, by when each write began and ended
    relative to the erase (``before``: acknowledged before it started; ``after``: begun
    after it returned; ``during``: the rest, which may or may not survive)."""

    place: Place
    before: list[str] = field(default_factory=list)
    during: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)


class _Race:
    """Writers writing a new key each, as fast as they can, while the test erases."""

    def __init__(self, backend: ErasingBackend, where: list[Place]) -> None:
        self.backend = backend
        self.writers = [_Writer(place) for place in where]
        self.phase = "before"
        self.stop = False
        self.progress = asyncio.Condition()

    async def write(self, writer: _Writer) -> None:
        n = 0
        while not self.stop:
            began, key = self.phase, f"k{n}"
            place = writer.place
            await self.backend.set(StateWrite(place.key, key, str(n), place.context))
            if self.phase == "before":
                writer.before.append(key)
            elif began == "after":
                writer.after.append(key)
            else:
                writer.during.append(key)
            n += 1
            async with self.progress:
                self.progress.notify_all()
            await asyncio.sleep(0)  # a backend that never waits must still let others run

    async def until(self, enough: int, phase: str) -> None:
        """Wait until every writer has ``enough`` writes of ``phase``."""
        async with self.progress:
            await self.progress.wait_for(
                lambda: all(len(getattr(w, phase)) >= enough for w in self.writers)
            )


class ErasureRaceContract:
    """Bookkeeping, expiry, streaming and races (see the module docstring)."""

    async def test_erase_removes_the_scopes_bookkeeping(self, erasing: ErasingBackend) -> None:
        """After an erase the scope is gone on every read path, and a new write starts it
        anew: versions at 1, no deadline, listed alone, found again."""
        fields = base_fields(new_tag())
        place = Place.of("actor", fields)
        ttl = 3600.0 if Capability.EXPIRY in erasing.capabilities else None
        await fill(erasing, [place], count=3, ttl=ttl)
        await fill(erasing, [place], count=3)  # every entry at version 2
        if ttl is not None:
            assert await as_expiring(erasing).scope_deadline(place.key) is not None
        result = await erasing.erase(Filter({"actor_id": fields["actor_id"]}))
        assert (result.scopes, result.entries) == (1, 3)
        assert await erasing.get(place.key, "k0") is None
        assert await erasing.read_scopes([place.key]) == {place.key: {}}
        assert await erasing.list_keys(place.key, "", 100, None) == ([], False)
        assert await erasing.scope_entries(place.key) == []
        assert await erasing.delete(place.key, "k1") is False
        await erasing.set_many(place.writes(1, first=7))
        if Capability.VERSIONS in erasing.capabilities:
            assert await erasing.set(StateWrite(place.key, "k8", "8", place.context), 0) == 1
        else:
            await erasing.set(StateWrite(place.key, "k8", "8", place.context))
        if ttl is not None:
            assert await as_expiring(erasing).scope_deadline(place.key) is None
        assert await erasing.list_keys(place.key, "", 100, None) == (["k7", "k8"], False)
        hits = await found(erasing, Filter({"actor_id": fields["actor_id"]}))
        assert [(key, info.entries) for key, info in hits.items()] == [(place.key, 2)]

    async def test_expired_scopes_are_never_found_or_counted(self, erasing: ErasingBackend) -> None:
        if Capability.EXPIRY not in erasing.capabilities:
            pytest.skip(f"backend does not declare {Capability.EXPIRY.value}")
        with expiry_time_of(erasing) as time:

            async def attempt() -> None:
                fields = base_fields(new_tag())
                live = Place.of("actor", fields)
                gone = Place.of("actor", {**fields, "runner_id": fields["runner_id"] + ".2"})
                identity = Filter({"actor_id": fields["actor_id"]})
                await fill(erasing, [live])
                _, deadline = await time.deadline_of(fill(erasing, [gone], 3, time.ttl), time.ttl)
                await time.before(deadline)
                assert set(await found(erasing, identity)) == {live.key, gone.key}
                time.still_before(deadline)
                await time.past(deadline)
                assert set(await found(erasing, identity)) == {live.key}
                assert await erasing.scope_entries(gone.key) == []
                await erasing.set_many(gone.writes(1, first=5))  # a new scope, found anew
                hits = await found(erasing, identity)
                assert {key: info.entries for key, info in hits.items()} == {
                    live.key: 2,
                    gone.key: 1,
                }
                result = await erasing.erase(identity)
                assert (result.scopes, result.entries) == (2, 3)

            await retry_too_late(attempt)

    async def test_find_streams_more_scopes_than_one_batch(self, erasing: ErasingBackend) -> None:
        fields = base_fields(new_tag())
        world = [
            Place.of("actor", {**fields, "runner_id": f"{fields['runner_id']}.{n}"})
            for n in range(MANY_SCOPES)
        ]
        bystander = Place.of("actor", {**fields, "actor_id": fields["actor_id"] + "0"})
        await fill(erasing, [*world, bystander], count=1)
        identity = Filter({"actor_id": fields["actor_id"]})
        hits = await found(erasing, identity)
        assert set(hits) == {place.key for place in world}
        assert all(info.entries == 1 for info in hits.values())
        result = await erasing.erase(identity)
        assert (result.scopes, result.entries) == (MANY_SCOPES, MANY_SCOPES)
        left = {scope_key for scope_key, _ in await stored(erasing)}
        assert bystander.key in left
        assert not left & set(hits)

    async def test_writes_racing_an_erase(self, erasing: ErasingBackend) -> None:
        """Nothing acknowledged before the erase started survives it, everything written
        after it returned does, scopes it does not match lose nothing, each matching scope
        is counted once (erased once, even when a racing write brought it back), and the
        matching scopes written again are found again (their index kept up)."""
        fields = base_fields(new_tag())
        actor_id = fields["actor_id"]
        matching = [
            Place.of("actor", {**fields, "runner_id": f"{fields['runner_id']}.{n}"})
            for n in range(3)
        ]
        others = [
            Place.of("actor", {**fields, "actor_id": actor_id + "0"}),
            Place.of("actor", {**fields, "actor_type": fields["actor_type"] + "0"}),
            Place.of("conversation", fields),  # its context carries the actor_id
        ]
        identity = Filter({"actor_id": actor_id, "actor_type": fields["actor_type"]})
        race = _Race(erasing, matching + others)
        tasks = [asyncio.create_task(race.write(writer)) for writer in race.writers]
        try:
            await race.until(5, "before")
            race.phase = "during"
            result = await erasing.erase(identity)
            race.phase = "after"
            await race.until(5, "after")
        finally:
            race.stop = True
            await asyncio.gather(*tasks)
        await _check_race(erasing, race, identity, result)


async def _check_race(
    backend: ErasingBackend, race: _Race, identity: Filter, result: ErasureResult
) -> None:
    """See :meth:`ErasureRaceContract.test_writes_racing_an_erase`; the first three
    writers are the ones on matching scopes."""
    matching, scopes, entries = race.writers[:3], result.scopes, result.entries
    before = sum(len(w.before) for w in matching)
    assert scopes == len(matching)
    assert before <= entries <= before + sum(len(w.during) for w in matching)
    for writer in race.writers:
        key = writer.place.key
        left = set((await backend.read_scopes([key]))[key])
        if writer in matching:
            assert not left & set(writer.before), f"{key}: written before the erase, kept"
            assert set(writer.after) <= left, f"{key}: written after the erase, lost"
        else:
            assert left == {*writer.before, *writer.during, *writer.after}, f"{key} lost entries"
    hits = await found(backend, identity)
    assert set(hits) == {w.place.key for w in matching}
    for key, info in hits.items():
        assert info.entries == len((await backend.read_scopes([key]))[key])
