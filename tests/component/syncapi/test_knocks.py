"""The ``rooms.knock`` section of /sync: a knock shows there with its
knock_state, and leaves it for ``invite``/``join`` or ``leave``."""

from __future__ import annotations

from typing import Any

from myelin.roomserver.v1 import output_log_pb2

from matrixlib.events import MEMBER, Event
from tests.builders import TestRoom, event_proto
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env


def knock_state(body: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    return list(body["rooms"]["knock"][room_id]["knock_state"]["events"])


def knock_room() -> TestRoom:
    room = TestRoom()
    room.set_state("m.room.join_rules", {"join_rule": "knock"})
    room.set_state("m.room.name", {"name": "Knockers"})
    room.set_state("m.room.topic", {"topic": "knock first"})
    room.message(ALICE, "not for knockers")
    return room


async def test_a_knock_shows_with_knock_state_then_moves_to_invite_and_join(env: Env) -> None:
    room = knock_room()
    await env.send_room(room)
    token = env.token(BOB)
    since = (await env.sync(token))["next_batch"]

    await env.send(room.knock(BOB))
    body = await env.sync(token, since=since)
    state = knock_state(body, room.room_id)
    assert {"type": "m.room.name", "state_key": "", "content": {"name": "Knockers"}, "sender": ALICE} in state
    assert {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"},
            "sender": ALICE} in state
    assert {(e["type"], e["state_key"]) for e in state} == {
        ("m.room.create", ""), ("m.room.join_rules", ""), ("m.room.name", ""), ("m.room.topic", ""),
        (MEMBER, BOB)}
    own = next(e for e in state if e["type"] == MEMBER)
    assert own["content"]["membership"] == "knock" and own["sender"] == BOB
    assert room.room_id not in body["rooms"]["join"] and room.room_id not in body["rooms"]["leave"]
    # An initial sync has it too; a sync with nothing new since does not repeat it.
    assert room.room_id in (await env.sync(token))["rooms"]["knock"]
    assert (await env.sync(token, since=body["next_batch"]))["rooms"]["knock"] == {}
    # Others do not see Bob's knock in their own knock section.
    assert (await env.sync(env.token(CAROL)))["rooms"]["knock"] == {}

    await env.send(room.invite(ALICE, BOB))
    invited = await env.sync(token, since=body["next_batch"])
    assert room.room_id in invited["rooms"]["invite"]
    assert invited["rooms"]["knock"] == {}
    assert (await env.sync(token))["rooms"]["knock"] == {}

    await env.send(room.join(BOB))
    joined = await env.sync(token, since=invited["next_batch"])
    assert room.room_id in joined["rooms"]["join"]
    assert joined["rooms"]["knock"] == {}
    initial = await env.sync(token)
    assert room.room_id in initial["rooms"]["join"] and initial["rooms"]["knock"] == {}


async def test_a_knock_accepted_by_a_join_leaves_knock(env: Env) -> None:
    room = knock_room()
    await env.send_room(room)
    token = env.token(BOB)
    await env.send(room.knock(BOB))
    body = await env.sync(token)
    assert room.room_id in body["rooms"]["knock"]
    # Accepted: the knocker is let in (here straight to a join).
    await env.send(room.join(BOB))
    joined = await env.sync(token, since=body["next_batch"])
    assert room.room_id in joined["rooms"]["join"] and joined["rooms"]["knock"] == {}


async def test_a_rejected_knock_goes_to_leave(env: Env) -> None:
    room = knock_room()
    await env.send_room(room)
    token = env.token(BOB)
    await env.send(room.knock(BOB))
    body = await env.sync(token)
    assert room.room_id in body["rooms"]["knock"]

    rejection = room.kick(ALICE, BOB)
    await env.send(rejection)
    after = await env.sync(token, since=body["next_batch"])
    assert after["rooms"]["knock"] == {}
    assert room.room_id in after["rooms"]["leave"]
    assert (await env.sync(token))["rooms"]["knock"] == {}


async def test_a_retracted_knock_goes_to_leave(env: Env) -> None:
    room = knock_room()
    await env.send_room(room)
    token = env.token(BOB)
    await env.send(room.knock(BOB))
    body = await env.sync(token)
    await env.send(room.leave(BOB))
    after = await env.sync(token, since=body["next_batch"])
    assert after["rooms"]["knock"] == {}
    assert room.room_id in after["rooms"]["leave"]


# -- a knock through another server: the room server's entry carries the
# knock with the knock_room_state that server answered (the sync API has
# none of the room's events).

def remote_knock_entry(remote: TestRoom, knock: Event) -> output_log_pb2.OutputEvent:
    knock_room_state = [
        b'{"type":"m.room.join_rules","state_key":"","content":{"join_rule":"knock"},"sender":"@dave:elsewhere"}',
        b'{"type":"m.room.name","state_key":"","content":{"name":"Far away"},"sender":"@dave:elsewhere"}']
    return output_log_pb2.OutputEvent(new_invite_event=output_log_pb2.NewInviteEvent(
        event=event_proto(knock), target_user_id=BOB, invite_room_state_json=knock_room_state))


async def test_a_knock_through_another_server_shows_then_moves_to_invite(env: Env) -> None:
    remote = TestRoom(creator="@dave:elsewhere", server_name="elsewhere")
    remote.set_state("m.room.join_rules", {"join_rule": "knock"})
    token = env.token(BOB)
    since = (await env.sync(token))["next_batch"]
    await env.append(remote_knock_entry(remote, remote.knock(BOB)), remote.room_id)
    body = await env.sync(token, since=since, timeout=5000)
    state = knock_state(body, remote.room_id)
    assert {"type": "m.room.name", "state_key": "", "content": {"name": "Far away"},
            "sender": "@dave:elsewhere"} in state
    assert any(e["type"] == MEMBER and e["state_key"] == BOB and e["content"]["membership"] == "knock"
               for e in state)
    # Not an invite.
    assert body["rooms"]["invite"] == {}
    assert (await env.sync(token))["rooms"]["invite"] == {}
    assert remote.room_id in (await env.sync(token))["rooms"]["knock"]

    # Accepted: the room's server invites Bob.
    invite = remote.invite("@dave:elsewhere", BOB)
    await env.append(output_log_pb2.OutputEvent(new_invite_event=output_log_pb2.NewInviteEvent(
        event=event_proto(invite), target_user_id=BOB)), remote.room_id)
    invited = await env.sync(token, since=body["next_batch"], timeout=5000)
    assert remote.room_id in invited["rooms"]["invite"]
    assert invited["rooms"]["knock"] == {}
    initial = await env.sync(token)
    assert remote.room_id in initial["rooms"]["invite"] and initial["rooms"]["knock"] == {}


async def test_a_knock_through_another_server_retracted_goes_to_leave(env: Env) -> None:
    remote = TestRoom(creator="@dave:elsewhere", server_name="elsewhere")
    remote.set_state("m.room.join_rules", {"join_rule": "knock"})
    token = env.token(BOB)
    since = (await env.sync(token))["next_batch"]
    knock = remote.knock(BOB)
    await env.append(remote_knock_entry(remote, knock), remote.room_id)
    body = await env.sync(token, since=since, timeout=5000)
    assert remote.room_id in body["rooms"]["knock"]

    retraction = remote.leave(BOB)
    await env.append(output_log_pb2.OutputEvent(retire_invite_event=output_log_pb2.RetireInviteEvent(
        event_id=knock.event_id, room_id=remote.room_id, target_user_id=BOB, membership="leave",
        retired_by_event_id=retraction.event_id)), remote.room_id)
    after = await env.sync(token, since=body["next_batch"], timeout=5000)
    assert after["rooms"]["knock"] == {}
    assert remote.room_id in after["rooms"]["leave"]
    assert (await env.sync(token))["rooms"]["knock"] == {}
