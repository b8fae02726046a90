"""A device whose record of the member events it was sent (lazy-loaded
members) was forgotten to keep the record within its bound is sent the
members again, never left without them (issue 6)."""

from __future__ import annotations

from typing import Any

from matrixlib.events import MEMBER
from syncapi.internal.lazy_members import LazyLoadedMembers
from tests.builders import TestRoom
from tests.component.syncapi.conftest import BOB, CAROL, Env

LAZY = '{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}'


def member_keys(body: dict[str, Any], room_id: str) -> list[str]:
    return [e["state_key"] for e in body["rooms"]["join"][room_id]["state"]["events"] if e["type"] == MEMBER]


async def test_a_device_forgotten_for_the_bound_is_sent_its_members_again(env: Env) -> None:
    members = LazyLoadedMembers(max_total_members=3)
    env.syncapi.sync_handler.lazy_members = members
    room = TestRoom()
    room.join(CAROL)
    room.join(BOB)
    await env.send_room(room)
    token = env.token(BOB)
    first = await env.sync(token, filter=LAZY)
    await env.send(room.message(CAROL, "one"))
    second = await env.sync(token, since=first["next_batch"], filter=LAZY, timeout=5000)
    assert member_keys(second, room.room_id) == [CAROL]
    await env.send(room.message(CAROL, "two"))
    third = await env.sync(token, since=second["next_batch"], filter=LAZY, timeout=5000)
    assert member_keys(third, room.room_id) == []  # remembered: not sent again

    # Other devices' syncs fill the record: Bob's device is forgotten first.
    for device in ("D1", "D2"):
        await env.sync(env.token(CAROL, device), filter=LAZY)
    assert members.total <= 3
    await env.send(room.message(CAROL, "three"))
    fourth = await env.sync(token, since=third["next_batch"], filter=LAZY, timeout=5000)
    assert member_keys(fourth, room.room_id) == [CAROL]
