"""An initial /sync with a timeline filter reads its rooms' recent events in
compound statements of at most 8 rooms, padded to 1, 2, 4 or 8: SQLAlchemy
builds and compiles these (the filter is part of them) and keeps each shape
in its compiled cache, where the compound for 100 rooms held ~5 MB (issue 6,
peak memory). Every room still gets exactly its own filtered timeline."""

from __future__ import annotations

import json
from typing import Any

import pytest

import syncapi.storage.tables.events as events_t
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, Env, on_each_database

FILTERED = {"room": {"timeline": {"limit": 2, "not_types": ["x.hidden"]}}}


async def _rooms(env: Env, count: int) -> list[TestRoom]:
    rooms = []
    for n in range(count):
        room = TestRoom()
        room.join(BOB)
        for i in range(n % 4 + 1):
            room.message(ALICE, f"room {n} message {i}")
        room.build("x.hidden", {"n": n}, sender=ALICE)
        await env.send_room(room)
        rooms.append(room)
    return rooms


@on_each_database
async def test_filtered_timelines_in_padded_chunks(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    union = events_t._union_of_rooms

    def recording(per_room: list[Any]) -> Any:
        sizes.append(len(per_room))
        return union(per_room)

    monkeypatch.setattr(events_t, "_union_of_rooms", recording)
    rooms = await _rooms(env, 11)
    body = await env.sync(env.token(BOB, "ALL"), filter=json.dumps(FILTERED))
    joined = body["rooms"]["join"]
    assert set(joined) == {room.room_id for room in rooms}
    # 11 rooms: a chunk of 8 and one of 3 padded to 4.
    assert sorted(sizes) == [4, 8]
    for n, room in enumerate(rooms):
        timeline = joined[room.room_id]["timeline"]["events"]
        assert all(e["type"] != "x.hidden" for e in timeline)
        expected = [e.event_id for e in room.events if e.type != "x.hidden"][-2:]
        assert [e["event_id"] for e in timeline] == expected, n
        alone_filter = {"room": {**FILTERED["room"], "rooms": [room.room_id]}}
        alone = await env.sync(env.token(BOB, f"ONE{n}"), filter=json.dumps(alone_filter))
        assert [e["event_id"] for e in alone["rooms"]["join"][room.room_id]["timeline"]["events"]] == expected
    assert set(sizes) <= {1, 2, 4, 8}
