"""The room server output consumer's memory of each room's local members
stays within its bound however many rooms it sees, and a room forgotten to
keep that bound still wakes all its members (issue 6)."""

from __future__ import annotations

import asyncio

from common.lru_cache import LRUCache
from syncapi.consumers.roomserver import _weigh_members
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, shared_room


async def test_a_forgotten_room_still_wakes_its_members(env: Env) -> None:
    env.syncapi.consumer._local_members = LRUCache(1, max_weight=100, weigh=_weigh_members)
    room = await shared_room(env, BOB)
    other = await shared_room(env, CAROL)  # takes the only place
    assert env.syncapi.consumer._local_members.get(room.room_id) is None
    bob = env.token(BOB)
    since = await env.next_batch(bob)
    poll = asyncio.create_task(env.sync(bob, since=since, timeout=20_000))
    await asyncio.sleep(0.2)
    hello = room.message(ALICE, "hello")
    await env.send(hello)
    body = await asyncio.wait_for(poll, 5)
    timeline = body["rooms"]["join"][room.room_id]["timeline"]["events"]
    assert [e["event_id"] for e in timeline] == [hello.event_id]
    assert other.room_id not in body["rooms"]["join"]


async def test_members_kept_for_many_rooms_stay_bounded(env: Env) -> None:
    consumer = env.syncapi.consumer
    consumer._local_members = LRUCache(100, max_weight=6, weigh=_weigh_members)
    for i in range(6):
        room = TestRoom()
        room.join(BOB)
        room.join(f"@u{i}:test")
        await env.send_room(room)
        await env.send(room.message(BOB, "hi"))
        assert consumer._local_members.total_weight <= 6
    assert 1 <= len(consumer._local_members) <= 2
