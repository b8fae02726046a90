"""createRoom, membership, send and state through the real HTTP routes,
against the in-memory fake room server."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest
from myelin.roomserver.v1 import input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from matrixlib.events import Event
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS
from tests.component.clientapi.conftest import SERVER_NAME, Harness, HarnessFactory, User
from tests.fakes.roomserver import FakeRoomserver

V3 = "/_matrix/client/v3"


def fake(harness: Harness) -> FakeRoomserver:
    assert isinstance(harness.roomserver, FakeRoomserver)
    return harness.roomserver


async def get_state(harness: Harness, user: User, room_id: str, event_type: str, state_key: str = "",
                    **params: str) -> Any:
    path = f"{V3}/rooms/{quote(room_id, safe='')}/state/{event_type}"
    if state_key:
        path += "/" + quote(state_key, safe="")
    response = await harness.http.get(path, headers=user.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def membership_of(harness: Harness, room_id: str, user: User) -> str:
    answer = await harness.roomserver.query_membership_for_user(
        rs_pb.QueryMembershipForUserRequest(room_id=room_id, user_id=user.user_id))
    return answer.membership


# -- createRoom -------------------------------------------------------------------


async def test_create_room_v12_in_one_input_call(harness: Harness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice, name="Pub", topic="Happy hour")
    rs = fake(harness)
    assert rs.input_calls == 1
    room = rs.rooms[room_id]
    assert room.version.identifier == "12"
    types = [entry.event.event_id for entry in rs.inputs]
    assert len(types) == len(room.events) == 8
    create = room.events[room.state[("m.room.create", "")]]
    assert "room_id" not in create.pdu
    assert room_id == "!" + create.event_id[1:]
    assert create.content == {"room_version": "12"}
    power = await get_state(harness, alice, room_id, "m.room.power_levels")
    assert alice.user_id not in power["users"]
    assert power["events"]["m.room.tombstone"] > power["state_default"]
    assert (await get_state(harness, alice, room_id, "m.room.join_rules")) == {"join_rule": "invite"}
    assert (await get_state(harness, alice, room_id, "m.room.history_visibility")) == {
        "history_visibility": "shared"}
    assert (await get_state(harness, alice, room_id, "m.room.guest_access")) == {"guest_access": "can_join"}
    assert (await get_state(harness, alice, room_id, "m.room.name")) == {"name": "Pub"}
    assert (await get_state(harness, alice, room_id, "m.room.topic"))["topic"] == "Happy hour"
    member = await get_state(harness, alice, room_id, "m.room.member", alice.user_id)
    assert member["membership"] == "join"


async def test_v12_rooms_created_in_the_same_millisecond_are_distinct(harness: Harness,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A v12 room ID is its create event's hash: the same user creating
    the same room twice at once must still get two rooms."""
    import time

    import common.eventbuilder as eventbuilder

    alice = await harness.register("alice")
    # The clock stands still: every creation falls in the same millisecond.
    monkeypatch.setattr(eventbuilder, "_now_ms", lambda: 1_800_000_000_000)
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    body = {"preset": "private_chat", "room_version": "12"}
    answers = await asyncio.gather(*(harness.http.post(f"{V3}/createRoom", json=body, headers=alice.headers)
                                     for _ in range(5)))
    room_ids = [a.json()["room_id"] for a in answers]
    assert all(a.status_code == 200 for a in answers)
    assert len(set(room_ids)) == 5
    for room_id in room_ids:
        members = [k for (t, k) in fake(harness).rooms[room_id].state if t == "m.room.member"]
        assert members == [alice.user_id]


@pytest.mark.parametrize("version", list(KNOWN_ROOM_VERSIONS))
async def test_create_room_every_version(harness: Harness, version: str) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice, room_version=version, preset="public_chat", name="n")
    room = fake(harness).rooms[room_id]
    assert room.version.identifier == version
    create = room.events[room.state[("m.room.create", "")]]
    power = await get_state(harness, alice, room_id, "m.room.power_levels")
    if version == "12":
        assert alice.user_id not in power["users"]
    else:
        assert room_id.endswith(f":{SERVER_NAME}")
        assert power["users"] == {alice.user_id: 100}
    if int(version) <= 10:
        assert create.content["creator"] == alice.user_id
    else:
        assert "creator" not in create.content
    response = await harness.send(alice, room_id, {"msgtype": "m.text", "body": "hi"}, "t1")
    assert response.status_code == 200, response.text


async def test_default_room_version_from_config(make_harness: HarnessFactory) -> None:
    harness = await make_harness(default_room_version="10")
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice)
    assert fake(harness).rooms[room_id].version.identifier == "10"


async def test_public_chat_preset(harness: Harness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice, preset="public_chat")
    assert (await get_state(harness, alice, room_id, "m.room.join_rules")) == {"join_rule": "public"}
    assert (await get_state(harness, alice, room_id, "m.room.power_levels"))["invite"] == 50
    response = await harness.http.get(f"{V3}/rooms/{room_id}/state/m.room.guest_access", headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (404, "M_NOT_FOUND")


async def test_visibility_public_picks_public_chat(harness: Harness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice, visibility="public")
    assert (await get_state(harness, alice, room_id, "m.room.join_rules")) == {"join_rule": "public"}


async def test_trusted_private_chat_makes_invitees_creators(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice, preset="trusted_private_chat", invite=[bob.user_id],
                                        is_direct=True)
    room = fake(harness).rooms[room_id]
    create = room.events[room.state[("m.room.create", "")]]
    assert create.content["additional_creators"] == [bob.user_id]
    invite = await get_state(harness, alice, room_id, "m.room.member", bob.user_id)
    assert invite == {"membership": "invite", "is_direct": True, "displayname": "bob"}

    old_room = await harness.create_room(alice, preset="trusted_private_chat", invite=[bob.user_id],
                                         room_version="10")
    power = await get_state(harness, alice, old_room, "m.room.power_levels")
    assert power["users"] == {alice.user_id: 100, bob.user_id: 100}


async def test_initial_state_and_overrides(harness: Harness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(
        alice, preset="private_chat", name="final name",
        initial_state=[
            {"type": "m.room.join_rules", "content": {"join_rule": "public"}},
            {"type": "m.room.name", "state_key": "", "content": {"name": "replaced"}},
            {"type": "org.example.custom", "state_key": "k", "content": {"x": 1}},
        ],
        power_level_content_override={"events_default": 20, "users_default": 5},
        creation_content={"m.federate": False})
    assert (await get_state(harness, alice, room_id, "m.room.join_rules")) == {"join_rule": "public"}
    assert (await get_state(harness, alice, room_id, "m.room.name")) == {"name": "final name"}
    assert (await get_state(harness, alice, room_id, "org.example.custom", "k")) == {"x": 1}
    power = await get_state(harness, alice, room_id, "m.room.power_levels")
    assert (power["events_default"], power["users_default"]) == (20, 5)
    room = fake(harness).rooms[room_id]
    assert room.events[room.state[("m.room.create", "")]].content["m.federate"] is False


async def test_create_room_refusals(harness: Harness) -> None:
    alice = await harness.register("alice")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"room_version": "99"}, 400, "M_UNSUPPORTED_ROOM_VERSION"),
        ({"room_version": 12}, 400, "M_BAD_JSON"),
        ({"preset": "party"}, 400, "M_INVALID_PARAM"),
        ({"visibility": "secret"}, 400, "M_INVALID_PARAM"),
        ({"name": 5}, 400, "M_BAD_JSON"),
        ({"topic": {"text": "x"}}, 400, "M_BAD_JSON"),
        ({"invite": "@bob:x"}, 400, "M_BAD_JSON"),
        ({"invite": ["bob"]}, 400, "M_INVALID_PARAM"),
        ({"initial_state": [{"content": {}}]}, 400, "M_MISSING_PARAM"),
        ({"initial_state": [{"type": "m.room.name"}]}, 400, "M_MISSING_PARAM"),
        ({"initial_state": ["m.room.name"]}, 400, "M_BAD_JSON"),
        ({"creation_content": []}, 400, "M_BAD_JSON"),
        ({"power_level_content_override": {"users": {"@alice:client.test": 100}}}, 400, "M_INVALID_PARAM"),
        ({"is_direct": "yes"}, 400, "M_BAD_JSON"),
        ({"name": "x" * 70000}, 413, "M_TOO_LARGE"),
        ({"creation_content": {"n": 1.5}}, 400, "M_BAD_JSON"),
        # The creator may not send this at the power level the room gives.
        ({"power_level_content_override": {"events": {"m.room.name": 200}}, "name": "x",
          "room_version": "10"}, 403, "M_FORBIDDEN"),
    ]
    for body, status, errcode in cases:
        response = await harness.http.post(f"{V3}/createRoom", json=body, headers=alice.headers)
        assert (response.status_code, response.json().get("errcode")) == (status, errcode), body
    assert fake(harness).input_calls == 0
    response = await harness.http.post(f"{V3}/createRoom", content=b"nope", headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_NOT_JSON")
    response = await harness.http.post(f"{V3}/createRoom", json={})
    assert response.status_code == 401


# -- membership --------------------------------------------------------------------


async def test_join_public_room_both_paths(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    carol = await harness.register("carol")
    room_id = await harness.create_room(alice, preset="public_chat")
    response = await harness.http.post(f"{V3}/join/{quote(room_id)}", json={}, headers=bob.headers)
    assert response.json() == {"room_id": room_id}
    assert await membership_of(harness, room_id, bob) == "join"
    response = await harness.http.post(f"{V3}/rooms/{room_id}/join", headers=carol.headers)
    assert response.json() == {"room_id": room_id}
    assert await membership_of(harness, room_id, carol) == "join"
    # Joining again sends nothing.
    events_before = len(fake(harness).rooms[room_id].events)
    response = await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=carol.headers)
    assert response.status_code == 200
    assert len(fake(harness).rooms[room_id].events) == events_before
    response = await harness.http.get(f"{V3}/joined_rooms", headers=carol.headers)
    assert response.json() == {"joined_rooms": [room_id]}


async def test_join_private_room_needs_invite(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice)
    response = await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    assert response.json()["error"]  # the room server's reason
    response = await harness.http.post(f"{V3}/rooms/{room_id}/invite", json={"user_id": bob.user_id},
                                       headers=alice.headers)
    assert response.status_code == 200 and response.json() == {}
    assert await membership_of(harness, room_id, bob) == "invite"
    response = await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
    assert response.status_code == 200
    assert await membership_of(harness, room_id, bob) == "join"


async def test_join_unknown_room_and_alias(harness: Harness) -> None:
    bob = await harness.register("bob")
    response = await harness.http.post(f"{V3}/join/!nothere:{SERVER_NAME}", json={}, headers=bob.headers)
    assert (response.status_code, response.json()["errcode"]) == (404, "M_NOT_FOUND")
    response = await harness.http.post(f"{V3}/join/{quote('#alias:' + SERVER_NAME)}", json={},
                                       headers=bob.headers)
    assert (response.status_code, response.json()["errcode"]) == (404, "M_NOT_FOUND")
    response = await harness.http.post(f"{V3}/join/notaroom", json={}, headers=bob.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_PARAM")


async def test_invite_refusals(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice)
    # Bob is not in the room: he cannot invite.
    response = await harness.http.post(f"{V3}/rooms/{room_id}/invite", json={"user_id": alice.user_id},
                                       headers=bob.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    response = await harness.http.post(f"{V3}/rooms/{room_id}/invite", json={}, headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_MISSING_PARAM")
    response = await harness.http.post(f"{V3}/rooms/{room_id}/invite", json={"user_id": "bob"},
                                       headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_PARAM")


async def test_leave(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice, preset="public_chat")
    await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
    response = await harness.http.post(f"{V3}/rooms/{room_id}/leave", json={"reason": "bye"}, headers=bob.headers)
    assert response.status_code == 200 and response.json() == {}
    assert await membership_of(harness, room_id, bob) == "leave"
    response = await harness.send(bob, room_id, {"body": "still here?"}, "t1")
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    response = await harness.http.get(f"{V3}/joined_rooms", headers=bob.headers)
    assert response.json() == {"joined_rooms": []}


# -- sending -------------------------------------------------------------------------


async def test_send_is_idempotent_per_device_and_txn(harness: Harness) -> None:
    alice = await harness.register("alice", "pw")
    room_id = await harness.create_room(alice)
    rs = fake(harness)
    first = await harness.send(alice, room_id, {"msgtype": "m.text", "body": "one"}, "txn1")
    assert first.status_code == 200
    inputs_before = len(rs.inputs)
    again = await harness.send(alice, room_id, {"msgtype": "m.text", "body": "one"}, "txn1")
    assert again.json() == first.json()
    assert len(rs.inputs) == inputs_before
    other = await harness.send(alice, room_id, {"msgtype": "m.text", "body": "two"}, "txn2")
    assert other.json()["event_id"] != first.json()["event_id"]
    # Another device of the same user has its own transaction IDs.
    login = await harness.http.post(f"{V3}/login", json={"type": "m.login.password", "user": "alice",
                                                         "password": "pw"})
    second_device = User(alice.user_id, login.json()["device_id"], login.json()["access_token"])
    third = await harness.send(second_device, room_id, {"msgtype": "m.text", "body": "one"}, "txn1")
    assert third.json()["event_id"] != first.json()["event_id"]
    # And the same txn ID for another event type is another request.
    fourth = await harness.send(alice, room_id, {"x": 1}, "txn1", event_type="org.example.ping")
    assert fourth.json()["event_id"] != first.json()["event_id"]


async def test_send_carries_transaction_id(harness: Harness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice)
    response = await harness.send(alice, room_id, {"msgtype": "m.text", "body": "hi"}, "abc$123")
    event_id = response.json()["event_id"]
    entry: input_log_pb2.InputRoomEvent = fake(harness).inputs[-1]
    assert entry.event.event_id == event_id
    assert entry.kind == input_log_pb2.INPUT_KIND_NEW
    assert (entry.transaction_id.user_id, entry.transaction_id.device_id, entry.transaction_id.transaction_id) \
        == (alice.user_id, alice.device_id, "abc$123")
    event = fake(harness).rooms[room_id].events[event_id]
    assert event.sender == alice.user_id and event.content["body"] == "hi"


async def test_send_refusals(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice)
    response = await harness.send(bob, room_id, {"body": "let me in"}, "t1")
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    response = await harness.send(bob, f"!unknown:{SERVER_NAME}", {"body": "x"}, "t1")
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    path = f"{V3}/rooms/{room_id}/send/m.room.message"
    response = await harness.http.put(f"{path}/t2", content=b"{not json", headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_NOT_JSON")
    response = await harness.http.put(f"{path}/t3", json=["a"], headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_BAD_JSON")
    response = await harness.http.put(f"{path}/t4", content=b'{"n": 1.5}', headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_BAD_JSON")
    response = await harness.http.put(f"{path}/t5", json={"body": "x" * 70000}, headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (413, "M_TOO_LARGE")
    # Content under the limit whose signed event is over it.
    response = await harness.http.put(f"{path}/t6", json={"body": "x" * 65400}, headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (413, "M_TOO_LARGE")
    response = await harness.http.put(f"{path}/t7", json={"body": "x"},
                                      headers={"Authorization": "Bearer wrong"})
    assert (response.status_code, response.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert response.json()["soft_logout"] is False


async def test_send_with_encoded_room_id(harness: Harness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice, room_version="10")
    response = await harness.http.put(
        f"{V3}/rooms/{quote(room_id, safe='')}/send/m.room.message/{quote('a/b c', safe='')}",
        json={"msgtype": "m.text", "body": "hi"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert fake(harness).inputs[-1].transaction_id.transaction_id == "a/b c"


# -- state -------------------------------------------------------------------------


async def test_put_and_get_state(harness: Harness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice)
    response = await harness.http.put(f"{V3}/rooms/{room_id}/state/m.room.topic", json={"topic": "new"},
                                      headers=alice.headers)
    assert response.status_code == 200, response.text
    event_id = response.json()["event_id"]
    assert (await get_state(harness, alice, room_id, "m.room.topic")) == {"topic": "new"}
    event = await get_state(harness, alice, room_id, "m.room.topic", format="event")
    assert event["event_id"] == event_id and event["state_key"] == "" and event["room_id"] == room_id
    response = await harness.http.put(f"{V3}/rooms/{room_id}/state/org.example.thing/key%2Fwith%2Fslash",
                                      json={"v": 1}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert (await get_state(harness, alice, room_id, "org.example.thing", "key/with/slash")) == {"v": 1}
    # A state key naming another user may only be sent by that user.
    response = await harness.http.put(f"{V3}/rooms/{room_id}/state/org.example.thing/@bob:{SERVER_NAME}",
                                      json={"v": 2}, headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    response = await harness.http.get(f"{V3}/rooms/{room_id}/state", headers=alice.headers)
    assert response.status_code == 200
    types = {(e["type"], e["state_key"]) for e in response.json()}
    assert ("m.room.create", "") in types and ("m.room.topic", "") in types
    assert all(e["room_id"] == room_id for e in response.json())


async def test_state_refusals(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice, preset="public_chat")
    for path in ["/state", "/state/m.room.create", "/state/m.room.member/" + alice.user_id]:
        response = await harness.http.get(f"{V3}/rooms/{room_id}{path}", headers=bob.headers)
        assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN"), path
    response = await harness.http.get(f"{V3}/rooms/{room_id}/state/m.room.avatar", headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (404, "M_NOT_FOUND")
    await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
    # Bob (power 0) may not change the power levels.
    response = await harness.http.put(f"{V3}/rooms/{room_id}/state/m.room.power_levels",
                                      json={"users": {bob.user_id: 100}}, headers=bob.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    response = await harness.http.put(f"{V3}/rooms/{room_id}/state/m.room.name", content=b"x",
                                      headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_NOT_JSON")
    response = await harness.http.put(f"{V3}/rooms/{room_id}/state/m.room.name", json={"name": "y" * 66000},
                                      headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (413, "M_TOO_LARGE")


class InvalidatingRoomserver(FakeRoomserver):
    """Answers INVALID for every event after the room's creation."""

    async def input_room_events(self, req: rs_pb.InputRoomEventsRequest) -> rs_pb.InputRoomEventsResponse:
        if any(e.event.pdu_json and b'"m.room.message"' in e.event.pdu_json for e in req.events):
            return rs_pb.InputRoomEventsResponse(results=[
                rs_pb.InputEventResult(event_id=e.event.event_id, outcome=rs_pb.INPUT_OUTCOME_INVALID,
                                       reason="malformed") for e in req.events])
        return await super().input_room_events(req)


async def test_invalid_outcome_is_400(make_harness: HarnessFactory) -> None:
    harness = await make_harness(roomserver=InvalidatingRoomserver())
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice)
    response = await harness.send(alice, room_id, {"msgtype": "m.text", "body": "x"}, "t1")
    assert response.status_code == 400
    assert "malformed" in response.json()["error"]


async def test_events_are_signed_by_this_server(harness: Harness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice)
    room = fake(harness).rooms[room_id]
    for event in room.events.values():
        assert isinstance(event, Event)
        assert SERVER_NAME in event.signatures
