"""The ``rooms.knock`` section of /sync: a knock shows there with its
knock_state, and leaves it for ``invite``/``join`` or ``leave``."""

from __future__ import annotations

from typing import Any

from matrixlib.events import MEMBER
from tests.builders import TestRoom
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
