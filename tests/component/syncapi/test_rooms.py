"""/messages, /members, /joined_members, redactions and backfilled events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from myelin.roomserver.v1 import output_log_pb2

from matrixlib.events import MEMBER
from matrixlib.redaction import redact
from tests.builders import TestRoom, event_proto
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, shared_room


async def messages(env: Env, token: str, room_id: str, **params: Any) -> dict[str, Any]:
    if "from_" in params:
        params["from"] = params.pop("from_")
    response = await env.get(f"/_matrix/client/v3/rooms/{room_id}/messages", token, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_paginating_back_from_sync_reaches_creation_without_gaps_or_repeats(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    for i in range(100):
        room.message(ALICE if i % 2 else BOB, f"message {i}")
    await env.send_room(room)
    token = env.token(BOB)

    body = await env.sync(token)
    joined = body["rooms"]["join"][room.room_id]
    seen = [e["event_id"] for e in joined["timeline"]["events"]]
    from_token = joined["timeline"]["prev_batch"]
    pages = 0
    while True:
        page = await messages(env, token, room.room_id, dir="b", from_=from_token, limit=7)
        pages += 1
        assert page["start"] == from_token
        assert all(e["room_id"] == room.room_id for e in page["chunk"])
        seen = [e["event_id"] for e in reversed(page["chunk"])] + seen
        if "end" not in page:
            break
        from_token = page["end"]
        assert pages < 50
    expected = [e.event_id for e in room.events]
    assert seen == expected
    assert len(set(seen)) == len(seen) == 105

    # And forwards from the start, in one direction with `to`.
    first = await messages(env, token, room.room_id, dir="f", limit=4)
    assert [e["event_id"] for e in first["chunk"]] == expected[:4]
    second = await messages(env, token, room.room_id, dir="f", from_=first["end"], limit=4)
    assert [e["event_id"] for e in second["chunk"]] == expected[4:8]
    bounded = await messages(env, token, room.room_id, dir="b", limit=50, to=second["end"])
    assert [e["event_id"] for e in reversed(bounded["chunk"])] == expected[-50:]
    limited = await messages(env, token, room.room_id, dir="f", from_=first["end"], to=second["end"],
                             limit=50)
    assert [e["event_id"] for e in limited["chunk"]] == expected[4:8]
    assert "end" not in limited


async def test_messages_from_the_end_and_filters(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    room.message(ALICE, "a")
    room.build("m.custom", {"n": 1}, sender=BOB)
    last = room.message(ALICE, "b")
    await env.send_room(room)
    token = env.token(BOB)

    page = await messages(env, token, room.room_id, dir="b", limit=1)
    assert [e["event_id"] for e in page["chunk"]] == [last.event_id]
    assert "end" in page

    only = await messages(env, token, room.room_id, dir="b",
                          filter=json.dumps({"types": ["m.room.message"], "lazy_load_members": True}))
    assert [e["content"]["body"] for e in only["chunk"]] == ["b", "a"]
    assert {e["state_key"] for e in only["state"]} == {ALICE}
    senders = await messages(env, token, room.room_id, dir="b", filter=json.dumps({"senders": [BOB]}))
    assert {e["sender"] for e in senders["chunk"]} == {BOB}

    bad = await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/messages", token, dir="x")
    assert bad.status_code == 400


async def test_history_visibility_on_messages(env: Env) -> None:
    room = TestRoom(history_visibility="joined")
    secret = room.message(ALICE, "before bob joined")
    join = room.join(BOB)
    seen = room.message(ALICE, "bob is here")
    leave = room.leave(BOB)
    after = room.message(ALICE, "bob has gone")
    await env.send_room(room)
    token = env.token(BOB)

    page = await messages(env, token, room.room_id, dir="b", limit=50)
    ids = [e["event_id"] for e in page["chunk"]]
    assert ids[:3] == [leave.event_id, seen.event_id, join.event_id]
    assert secret.event_id not in ids and after.event_id not in ids

    stranger = await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/messages", env.token(CAROL), dir="b")
    assert stranger.status_code == 403

    public = TestRoom(history_visibility="world_readable")
    public.message(ALICE, "for everyone")
    await env.send_room(public)
    page = await messages(env, env.token(CAROL), public.room_id, dir="b")
    assert "for everyone" in [e["content"].get("body") for e in page["chunk"]]


async def test_shared_history_is_visible_to_members_who_joined_later(env: Env) -> None:
    room = TestRoom(history_visibility="shared")
    old = room.message(ALICE, "old news")
    room.join(BOB)
    await env.send_room(room)
    page = await messages(env, env.token(BOB), room.room_id, dir="b", limit=50)
    assert old.event_id in [e["event_id"] for e in page["chunk"]]


async def test_members_and_joined_members(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    room.invite(ALICE, CAROL)
    await env.send_room(room)
    token = env.token(BOB)
    at = await env.next_batch(token)
    room.build(MEMBER, {"membership": "join", "displayname": "Bobby"}, sender=BOB, state_key=BOB)
    await env.send(room.events[-1])

    path = f"/_matrix/client/v3/rooms/{room.room_id}/members"
    everyone = (await env.get(path, token)).json()["chunk"]
    assert {(e["state_key"], e["content"]["membership"]) for e in everyone} == {
        (ALICE, "join"), (BOB, "join"), (CAROL, "invite")}
    assert all(e["room_id"] == room.room_id for e in everyone)
    joined = (await env.get(path, token, membership="join")).json()["chunk"]
    assert {e["state_key"] for e in joined} == {ALICE, BOB}
    not_joined = (await env.get(path, token, not_membership="join")).json()["chunk"]
    assert {e["state_key"] for e in not_joined} == {CAROL}
    bob_then = next(e for e in (await env.get(path, token, at=at)).json()["chunk"] if e["state_key"] == BOB)
    assert "displayname" not in bob_then["content"]
    bob_now = next(e for e in everyone if e["state_key"] == BOB)
    assert bob_now["content"]["displayname"] == "Bobby"
    assert bob_now["unsigned"]["prev_content"] == {"membership": "join"}

    assert (await env.get(path, env.token(CAROL))).status_code == 403
    assert (await env.get(path, token, membership="nonsense")).status_code == 400

    joined_members = (await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/joined_members", token)).json()
    assert joined_members == {"joined": {ALICE: {}, BOB: {"display_name": "Bobby"}}}
    refused = await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/joined_members", env.token(CAROL))
    assert refused.status_code == 403


async def test_redaction_replaces_the_stored_event(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    target = room.message(BOB, "oops")
    room.set_state("m.room.topic", {"topic": "first"})
    topic = room.set_state("m.room.topic", {"topic": "second"})
    redaction = room.redact(BOB, target.event_id)
    topic_redaction = room.redact(ALICE, topic.event_id)
    await env.send_room(room)
    redacted = redact(target.pdu, room.version)
    from matrixlib.events import Event
    entry = output_log_pb2.OutputEvent(redacted_event=output_log_pb2.RedactedEvent(
        redacted_event_id=target.event_id, redaction_event_id=redaction.event_id,
        redacted_event=event_proto(Event(redacted, room.version))))
    await env.append(entry, room.room_id)
    await env.append(output_log_pb2.OutputEvent(redacted_event=output_log_pb2.RedactedEvent(
        redacted_event_id=topic.event_id, redaction_event_id=topic_redaction.event_id,
        redacted_event=event_proto(Event(redact(topic.pdu, room.version), room.version)))), room.room_id)
    marker = room.message(ALICE, "marker")
    await env.send(marker)

    page = await messages(env, env.token(BOB), room.room_id, dir="b", limit=10)
    redacted_topic = next(e for e in page["chunk"] if e["event_id"] == topic.event_id)
    assert redacted_topic["content"] == {}
    assert redacted_topic["unsigned"]["prev_content"] == {"topic": "first"}
    assert redacted_topic["unsigned"]["redacted_because"]["event_id"] == topic_redaction.event_id
    # The current state serves the redacted JSON too.
    body = await env.sync(env.token(BOB), filter='{"room":{"timeline":{"limit":1}}}')
    state_topic = next(e for e in body["rooms"]["join"][room.room_id]["state"]["events"]
                       if e["type"] == "m.room.topic")
    assert state_topic["content"] == {}
    stored = next(e for e in page["chunk"] if e["event_id"] == target.event_id)
    assert stored["content"] == {}
    assert stored["unsigned"]["redacted_because"]["event_id"] == redaction.event_id
    assert stored["unsigned"]["redacted_because"]["type"] == "m.room.redaction"


async def test_backfilled_events_go_into_the_past_not_into_sync(env: Env) -> None:
    room = await shared_room(env, BOB)
    token = env.token(BOB)
    since = await env.next_batch(token)
    # An event from the room's past (lower depth than everything known), backfilled.
    old = room.build("m.room.message", {"msgtype": "m.text", "body": "ancient"}, sender=ALICE,
                     prev_event_ids=[room.create.event_id], depth=2, advance=False)
    await env.send(old, historical=True)

    body = await env.sync(token, since=since)
    assert body["rooms"]["join"] == {}
    page = await messages(env, token, room.room_id, dir="b", limit=50)
    ids = [e["event_id"] for e in page["chunk"]]
    assert old.event_id in ids
    # Ordered by depth: after the creator's join (depth 2, earlier stream position), before the rest.
    assert ids.index(old.event_id) > ids.index(room.power_levels.event_id)


async def test_context_around_an_event(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    sent = [room.message(ALICE, f"c{i}") for i in range(10)]
    await env.send_room(room)
    token = env.token(BOB)
    path = f"/_matrix/client/v3/rooms/{room.room_id}/context/{sent[5].event_id}"

    body = (await env.get(path, token, limit=4)).json()
    assert body["event"]["event_id"] == sent[5].event_id
    assert body["event"]["room_id"] == room.room_id
    assert [e["event_id"] for e in body["events_before"]] == [sent[4].event_id, sent[3].event_id]
    assert [e["event_id"] for e in body["events_after"]] == [sent[6].event_id, sent[7].event_id]
    assert {(e["type"], e["state_key"]) for e in body["state"]} >= {("m.room.create", ""), (MEMBER, BOB)}

    back = await messages(env, token, room.room_id, dir="b", from_=body["start"], limit=1)
    assert [e["event_id"] for e in back["chunk"]] == [sent[2].event_id]
    forward = await messages(env, token, room.room_id, dir="f", from_=body["end"], limit=1)
    assert [e["event_id"] for e in forward["chunk"]] == [sent[8].event_id]

    lazy = (await env.get(path, token, limit=2, filter=json.dumps({"lazy_load_members": True}))).json()
    assert {e["state_key"] for e in lazy["state"]} == {ALICE}

    missing = await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/context/$nope", token)
    assert missing.status_code == 404
    assert (await env.get(path, env.token(CAROL))).status_code == 404


async def test_context_of_a_v3_event_id_with_a_slash(env: Env) -> None:
    from urllib.parse import quote

    room = TestRoom("3")
    room.join(BOB)
    target = room.message(ALICE, "slash 0")
    i = 0
    while "/" not in target.event_id:
        i += 1
        target = room.message(ALICE, f"slash {i}")
    await env.send_room(room)
    path = f"/_matrix/client/v3/rooms/{quote(room.room_id, safe='')}/context/{quote(target.event_id, safe='')}"
    response = await env.get(path, env.token(BOB), limit=0)
    assert response.status_code == 200, response.text
    assert response.json()["event"]["event_id"] == target.event_id


async def test_members_at_a_prev_batch_token(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    for i in range(12):
        room.message(ALICE, f"filler {i}")
    carol_join = room.join(CAROL)
    await env.send_room(room)
    token = env.token(BOB)
    prev_batch = (await env.sync(token, filter='{"room":{"timeline":{"limit":1}}}'))[
        "rooms"]["join"][room.room_id]["timeline"]["prev_batch"]
    path = f"/_matrix/client/v3/rooms/{room.room_id}/members"
    # The timeline starts with Carol's join: before it, she was not a member.
    before = (await env.get(path, token, at=prev_batch)).json()["chunk"]
    assert {e["state_key"] for e in before} == {ALICE, BOB}
    now = (await env.get(path, token)).json()["chunk"]
    assert carol_join.event_id in {e["event_id"] for e in now}


async def test_reads_right_after_a_join_wait_for_the_join_instead_of_refusing(env: Env) -> None:
    """The room server has the join before this read model does: /messages,
    /members and /context asked at once must answer, not 403."""
    room = TestRoom(history_visibility="joined")
    hello = room.message(ALICE, "hello")
    await env.send_room(room)
    join = room.join(BOB)
    env.roomserver.rooms[room.room_id] = room  # the room server has the join already
    token = env.token(BOB)

    async def join_arrives_late() -> None:
        await asyncio.sleep(0.3)
        await env.send(join)

    arriving = asyncio.create_task(join_arrives_late())
    page = await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/messages", token, dir="b")
    await arriving
    assert page.status_code == 200, page.text
    assert join.event_id in [e["event_id"] for e in page.json()["chunk"]]
    assert hello.event_id not in [e["event_id"] for e in page.json()["chunk"]]
    members = await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/members", token)
    assert members.status_code == 200
    # Someone the room server has never seen in the room is refused at once.
    stranger = await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/messages", env.token(CAROL), dir="b")
    assert stranger.status_code == 403


async def test_a_client_woken_by_a_redaction_reads_its_target_redacted(env: Env) -> None:
    """The redaction event and the entry that redacts its target arrive
    together: the /sync they wake must not come before the target is
    redacted here."""
    from common.topics import ROOMSERVER_OUTPUT
    from matrixlib.events import Event

    room = await shared_room(env, BOB)
    target = room.message(BOB, "oops")
    await env.send(target)
    token = env.token(ALICE)
    since = await env.next_batch(token)
    redaction = room.redact(BOB, target.event_id)
    polling = asyncio.create_task(env.sync(token, since=since, timeout="10000"))
    await asyncio.sleep(0.1)
    redacted = output_log_pb2.OutputEvent(redacted_event=output_log_pb2.RedactedEvent(
        redacted_event_id=target.event_id, redaction_event_id=redaction.event_id,
        redacted_event=event_proto(Event(redact(target.pdu, room.version), room.version))))
    await env.log.append_batch(ROOMSERVER_OUTPUT.name, [
        (room.room_id.encode(), env.new_room_event(redaction).SerializeToString()),
        (room.room_id.encode(), redacted.SerializeToString())])
    body = await polling
    assert redaction.event_id in [e["event_id"] for e in body["rooms"]["join"][room.room_id]["timeline"]["events"]]
    seen = await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/event/{target.event_id}", token)
    assert seen.status_code == 200 and seen.json()["content"] == {}, seen.text
