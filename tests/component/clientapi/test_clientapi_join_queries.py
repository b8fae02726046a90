"""A local join to a room this server is in asks the room server one
query (the state its event is built on, with whether this server is in the
room), against the in-memory fake room server; the event is the same as
before: the profile, the reason, the auth events of a join."""

from __future__ import annotations

import pytest

from matrixlib.events import CREATE, JOIN_RULES, MEMBER, POWER_LEVELS
from tests.component.clientapi.conftest import Harness
from tests.fakes.roomserver import FakeRoomserver

V3 = "/_matrix/client/v3"


def fake(harness: Harness) -> FakeRoomserver:
    assert isinstance(harness.roomserver, FakeRoomserver)
    return harness.roomserver


@pytest.mark.parametrize("version", ["1", "10", "12"])
async def test_local_join_is_one_query(harness: Harness, version: str) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    response = await harness.http.put(f"{V3}/profile/{bob.user_id}/displayname",
                                      json={"displayname": "Bob B"}, headers=bob.headers)
    assert response.status_code == 200
    room_id = await harness.create_room(alice, preset="public_chat", room_version=version)
    room = fake(harness).rooms[room_id]

    latest_before = list(room.latest)
    queries = fake(harness).query_calls
    response = await harness.http.post(f"{V3}/rooms/{room_id}/join", json={"reason": "hello"},
                                       headers=bob.headers)
    assert response.status_code == 200, response.text
    # Room versions 1 and 2 also look up the prev events' reference hashes.
    assert fake(harness).query_calls - queries == (2 if version == "1" else 1)
    join = room.events[room.state[(MEMBER, bob.user_id)]]
    assert join.sender == bob.user_id and join.state_key == bob.user_id
    assert dict(join.content) == {"membership": "join", "displayname": "Bob B", "reason": "hello"}
    wanted = [(POWER_LEVELS, ""), (JOIN_RULES, "")] + ([] if version == "12" else [(CREATE, "")])
    assert sorted(join.auth_event_ids) == sorted(room.state[key] for key in wanted)
    assert list(join.prev_event_ids) == latest_before

    # Joined already: one query, no event.
    events = len(room.events)
    queries = fake(harness).query_calls
    response = await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
    assert response.status_code == 200
    assert fake(harness).query_calls - queries == 1
    assert len(room.events) == events


async def test_invited_user_joins_a_private_room(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice)
    room = fake(harness).rooms[room_id]
    response = await harness.http.post(f"{V3}/rooms/{room_id}/invite", json={"user_id": bob.user_id},
                                       headers=alice.headers)
    assert response.status_code == 200
    invite_id = room.state[(MEMBER, bob.user_id)]
    response = await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
    assert response.status_code == 200, response.text
    join = room.events[room.state[(MEMBER, bob.user_id)]]
    assert join.content["membership"] == "join"
    # The invite authorises the join (join rule "invite").
    assert invite_id in join.auth_event_ids
