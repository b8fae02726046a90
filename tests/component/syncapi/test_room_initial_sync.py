"""GET /rooms/{roomId}/initialSync: a member's snapshot (current state,
latest messages oldest first, the room's account data), a peek into a
world-readable room, 403 for other rooms, and a former member's view as
of their leave; and the deprecated GET /events/{eventId}."""

from __future__ import annotations

from typing import Any

from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env
from tests.component.syncapi.test_account_data import change


async def initial_sync(env: Env, token: str, room_id: str, **params: Any) -> Any:
    return await env.get(f"/_matrix/client/v3/rooms/{room_id}/initialSync", token, **params)


async def test_member_snapshot(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    sent = [room.message(ALICE, f"m{i}") for i in range(15)]
    await env.send_room(room)
    await change(env, BOB, "m.tag", {"tags": {"u.work": {}}}, room_id=room.room_id)
    response = await initial_sync(env, env.token(BOB), room.room_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["room_id"] == room.room_id and body["membership"] == "join"
    assert [e["event_id"] for e in body["messages"]["chunk"]] == [e.event_id for e in sent[-10:]]
    assert "start" in body["messages"] and "end" in body["messages"]
    state = {(e["type"], e["state_key"]) for e in body["state"]}
    assert {("m.room.create", ""), ("m.room.member", ALICE), ("m.room.member", BOB)} <= state
    assert body["account_data"] == [{"type": "m.tag", "content": {"tags": {"u.work": {}}}}]
    # The start token pages further back with /messages.
    older = await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/messages", env.token(BOB),
                          dir="b", limit=5, **{"from": body["messages"]["start"]})
    assert [e["event_id"] for e in older.json()["chunk"]] == [e.event_id for e in reversed(sent[:5])]
    limited = (await initial_sync(env, env.token(BOB), room.room_id, limit=3)).json()
    assert [e["event_id"] for e in limited["messages"]["chunk"]] == [e.event_id for e in sent[-3:]]


async def test_peeking_needs_a_world_readable_room(env: Env) -> None:
    private = TestRoom(history_visibility="shared")
    private.message(ALICE, "for members")
    await env.send_room(private)
    response = await initial_sync(env, env.token(CAROL), private.room_id)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")

    public = TestRoom(history_visibility="world_readable")
    hello = public.message(ALICE, "hello, world")
    await env.send_room(public)
    response = await initial_sync(env, env.token(CAROL), public.room_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "membership" not in body and body["account_data"] == []
    assert body["messages"]["chunk"][-1]["event_id"] == hello.event_id


async def test_former_member_sees_the_room_as_they_left_it(env: Env) -> None:
    room = TestRoom(history_visibility="joined")
    room.join(BOB)
    before = room.message(ALICE, "while bob is here")
    room.leave(BOB)
    room.message(ALICE, "after bob left")
    topic = room.build("m.room.topic", {"topic": "new topic"}, sender=ALICE, state_key="")
    await env.send_room(room)
    body = (await initial_sync(env, env.token(BOB), room.room_id)).json()
    assert body["membership"] == "leave"
    ids = [e["event_id"] for e in body["messages"]["chunk"]]
    assert before.event_id in ids and topic.event_id not in ids
    assert ids[-1] == room.state[("m.room.member", BOB)].event_id
    assert topic.event_id not in {e["event_id"] for e in body["state"]}


async def test_deprecated_single_event_endpoint_applies_visibility(env: Env) -> None:
    room = TestRoom(history_visibility="joined")
    room.join(BOB)
    message = room.message(ALICE, "for members")
    await env.send_room(room)
    response = await env.get(f"/_matrix/client/v3/events/{message.event_id}", env.token(BOB))
    assert response.status_code == 200, response.text
    assert response.json()["event_id"] == message.event_id and response.json()["room_id"] == room.room_id
    for token, event_id in [(env.token(CAROL), message.event_id), (env.token(BOB), "$unknown")]:
        response = await env.get(f"/_matrix/client/v3/events/{event_id}", token)
        assert (response.status_code, response.json()["errcode"]) == (404, "M_NOT_FOUND")


async def test_event_stream_for_members_and_peekers(env: Env) -> None:
    room = TestRoom(history_visibility="world_readable")
    room.join(BOB)
    await env.send_room(room)
    bob, carol = env.token(BOB), env.token(CAROL)
    start = (await env.sync(bob))["next_batch"]
    empty = await env.get("/_matrix/client/v3/events", bob, **{"from": start, "timeout": "0"})
    assert empty.status_code == 200, empty.text
    assert empty.json()["chunk"] == []

    # Carol peeks: the room's snapshot, then the stream from its end.
    peek = (await initial_sync(env, carol, room.room_id)).json()
    hello = room.message(ALICE, "hello")
    await env.send(hello)
    body = (await env.get("/_matrix/client/v3/events", bob,
                          **{"from": empty.json()["end"], "timeout": "5000"})).json()
    assert [e["event_id"] for e in body["chunk"]] == [hello.event_id]
    assert body["chunk"][0]["room_id"] == room.room_id
    peeked = (await env.get("/_matrix/client/v3/events", carol,
                            **{"from": peek["messages"]["end"], "room_id": room.room_id, "timeout": "0"})).json()
    assert [e["event_id"] for e in peeked["chunk"]] == [hello.event_id]
    # Nothing new after the end token.
    again = (await env.get("/_matrix/client/v3/events", carol,
                           **{"from": peeked["end"], "room_id": room.room_id, "timeout": "0"})).json()
    assert again["chunk"] == []

    closed = TestRoom(history_visibility="shared")
    await env.send_room(closed)
    response = await env.get("/_matrix/client/v3/events", carol, room_id=closed.room_id, timeout="0")
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    response = await env.get("/_matrix/client/v3/events", bob, **{"from": "nonsense", "timeout": "0"})
    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_PARAM")


async def test_global_initial_sync(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    message = room.message(ALICE, "hi bob")
    await env.send_room(room)
    invited = TestRoom()
    invited.invite(ALICE, BOB)
    await env.send_room(invited)
    await change(env, BOB, "org.example.settings", {"theme": "dark"})
    response = await env.get("/_matrix/client/v3/initialSync", env.token(BOB))
    assert response.status_code == 200, response.text
    body = response.json()
    by_room = {r["room_id"]: r for r in body["rooms"]}
    assert by_room[room.room_id]["membership"] == "join"
    assert by_room[room.room_id]["messages"]["chunk"][-1]["event_id"] == message.event_id
    assert by_room[invited.room_id]["membership"] == "invite"
    assert {"type": "org.example.settings", "content": {"theme": "dark"}} in body["account_data"]
    assert body["end"].startswith("s")
