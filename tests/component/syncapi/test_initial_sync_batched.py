"""An initial /sync reads its rooms' state, member counts, names and heroes
for all the rooms at once: the number of statements does not grow with the
rooms, and every room comes exactly as when it is synced on its own (the
room-by-room path), whatever the filter."""

from __future__ import annotations

import json
from typing import Any

import pytest

import syncapi.internal.sync as sync_module
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, on_each_database
from tests.component.syncapi.test_sync_statements import StatementLog

DAVE = "@dave:test"


def _without_age(value: Any) -> Any:
    """The room entry with every unsigned.age left out (it follows the clock)."""
    if isinstance(value, dict):
        return {k: _without_age(v) for k, v in value.items() if k != "age"}
    if isinstance(value, list):
        return [_without_age(v) for v in value]
    return value


async def _rooms(env: Env) -> list[TestRoom]:
    """Rooms that take every branch: state replaced after the timeline's
    start (read from the state history), named and unnamed rooms, heroes
    among current and among former members, lazy members to leave out."""
    named = TestRoom()
    named.join(BOB)
    named.set_state("m.room.name", {"name": "one"})
    named.join(CAROL)
    for i in range(6):
        named.message(ALICE if i % 2 else CAROL, f"chat {i}")
    named.set_state("m.room.topic", {"topic": "t"})
    named.message(CAROL, "late")
    named.set_state("m.room.name", {"name": "two"})
    named.join(DAVE)
    named.message(ALICE, "last")

    unnamed = TestRoom()
    unnamed.join(BOB)
    unnamed.join(CAROL)
    unnamed.message(CAROL, "hi")
    unnamed.leave(CAROL)
    unnamed.message(ALICE, "bye carol")

    deserted = TestRoom()
    deserted.join(BOB)
    deserted.message(ALICE, "leaving")
    deserted.leave(ALICE)

    aliased = TestRoom()
    aliased.join(BOB)
    aliased.set_state("m.room.canonical_alias", {"alias": "#a:test"})
    aliased.set_state("m.room.name", {"name": ""})

    quiet = TestRoom()
    quiet.join(BOB)

    rooms = [named, unnamed, deserted, aliased, quiet]
    for room in rooms:
        await env.send_room(room)
    return rooms


FILTERS: list[dict[str, Any]] = [
    {"room": {"timeline": {"limit": 3}, "state": {"lazy_load_members": True}}},
    {"room": {"timeline": {"limit": 3}, "state": {"lazy_load_members": True, "include_redundant_members": True}}},
    {"room": {"timeline": {"limit": 3}}},
    {"room": {"timeline": {"limit": 1}, "state": {"types": ["m.room.name", "m.room.member"]}}},
    {"room": {"timeline": {"limit": 20}, "state": {"lazy_load_members": True}}},
]


async def _each_room_as_on_its_own(env: Env) -> None:
    rooms = await _rooms(env)
    devices = iter(range(1000))
    for sync_filter in FILTERS:
        for params in ({}, {"use_state_after": "true"}):
            together = await env.sync(env.token(BOB, f"D{next(devices)}"), filter=json.dumps(sync_filter), **params)
            assert set(together["rooms"]["join"]) == {room.room_id for room in rooms}
            for room in rooms:
                alone_filter = {**sync_filter, "room": {**sync_filter["room"], "rooms": [room.room_id]}}
                alone = await env.sync(env.token(BOB, f"D{next(devices)}"), filter=json.dumps(alone_filter),
                                       **params)
                assert set(alone["rooms"]["join"]) == {room.room_id}
                assert _without_age(together["rooms"]["join"][room.room_id]) == _without_age(
                    alone["rooms"]["join"][room.room_id]), (sync_filter, params, room.room_id)
    # What the rooms must show, not only agree on.
    named, unnamed, deserted, _, _ = rooms
    body = await env.sync(env.token(BOB, "CHECK"), filter=json.dumps(FILTERS[0]))
    joined = body["rooms"]["join"]
    state = joined[named.room_id]["state"]["events"]
    # The name in force before the timeline ("two" comes in it); the members
    # of the timeline's senders and Bob's own, not Carol's.
    assert [e["content"] for e in state if e["type"] == "m.room.name"] == [{"name": "one"}]
    assert {e["state_key"] for e in state if e["type"] == "m.room.member"} == {ALICE, BOB}
    assert joined[named.room_id]["summary"] == {"m.joined_member_count": 4, "m.invited_member_count": 0}
    assert joined[unnamed.room_id]["summary"]["m.heroes"] == [ALICE]
    assert joined[deserted.room_id]["summary"]["m.heroes"] == [ALICE]
    assert joined[deserted.room_id]["summary"]["m.joined_member_count"] == 1


@on_each_database
async def test_each_room_comes_as_when_synced_on_its_own(env: Env) -> None:
    await _each_room_as_on_its_own(env)


async def test_rooms_built_a_chunk_at_a_time_come_the_same(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunks of 2, 2 and 1 of the five rooms: each chunk reads and builds its
    # rooms, then drops what it read before the next one.
    monkeypatch.setattr(sync_module, "ROOMS_BUILT_AT_ONCE", 2)
    held_at_each_chunk: list[int] = []
    prefetch = sync_module._Builder._prefetch_whole_rooms

    async def recording(self: sync_module._Builder, timelines: list[Any]) -> None:
        held_at_each_chunk.append(len(self.stored_events))
        await prefetch(self, timelines)

    monkeypatch.setattr(sync_module._Builder, "_prefetch_whole_rooms", recording)
    await _each_room_as_on_its_own(env)
    held_at_each_chunk.clear()
    body = await env.sync(env.token(BOB, "CHUNKS"), filter=json.dumps(FILTERS[0]))
    assert len(body["rooms"]["join"]) == 5
    assert held_at_each_chunk == [0, 0, 0]


async def test_statements_do_not_grow_with_the_rooms(env: Env) -> None:
    lazy = json.dumps(FILTERS[0])
    # Bob's first sync also records his presence: not what is counted.
    await env.sync(env.token(BOB, "FIRST"), filter=lazy)
    counts = []
    for size in (3, 12):
        while len(env.feeds) < size:
            room = TestRoom()
            room.join(BOB)
            room.set_state("m.room.name", {"name": f"room {len(env.feeds)}"})
            room.join(CAROL)
            room.message(CAROL, "hello")
            await env.send_room(room)
        with StatementLog(env) as log:
            body = await env.sync(env.token(BOB, f"S{size}"), filter=lazy)
        assert len(body["rooms"]["join"]) == size
        counts.append(len(log.statements))
    assert counts[0] == counts[1], counts


@on_each_database
async def test_batched_state_is_the_state_at_each_rooms_position(env: Env) -> None:
    rooms = await _rooms(env)
    async with env.syncapi.database.read() as reader:
        top = await reader.current_position()
        # Every room at every position, each batch mixing rooms at different positions.
        for offset in range(top + 1):
            positions = {room.room_id: (offset + 3 * i) % (top + 1) for i, room in enumerate(rooms)}
            for members in (None, {room.room_id: {BOB, CAROL} for room in rooms}):
                batched = await reader.state_at_in_rooms(positions, members=members)
                for room_id, position in positions.items():
                    alone = await reader.state_at(room_id, position,
                                                  members=None if members is None else members[room_id])
                    assert sorted(batched[room_id], key=repr) == sorted(alone, key=repr), (room_id, position)
