"""Unread counts of several rooms in one /sync, with many notifications:
each room's count starts after the user's own latest receipt in that room
(unthreaded or for the main timeline), not another room's or user's. The
receipts are read once for the statement, not once per notification."""

from __future__ import annotations

from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, on_each_database
from tests.component.syncapi.test_ephemeral import receipt
from tests.component.syncapi.test_notifications import counts, group_room, unread


@on_each_database
async def test_counts_of_several_rooms_follow_each_rooms_own_receipts(env: Env) -> None:
    first, second, third = await group_room(env), await group_room(env), await group_room(env)
    sent = {room.room_id: [room.message(BOB, f"m{i}") for i in range(40)] for room in (first, second, third)}
    for events in sent.values():
        await env.send(*events)
    alice = env.token(ALICE)
    for room in (first, second, third):
        assert unread(await env.sync(alice), room.room_id) == counts(40, 0)
    await receipt(env, first.room_id, ALICE, "m.read", sent[first.room_id][9].event_id)
    await receipt(env, second.room_id, ALICE, "m.read.private", sent[second.room_id][29].event_id,
                  thread_id="main")
    # Carol's receipt on the third room's last message is hers only.
    await receipt(env, third.room_id, CAROL, "m.read", sent[third.room_id][39].event_id)
    body = await env.sync(alice)
    assert unread(body, first.room_id) == counts(30, 0)
    assert unread(body, second.room_id) == counts(10, 0)
    assert unread(body, third.room_id) == counts(40, 0)
    assert unread(await env.sync(env.token(CAROL)), third.room_id) == counts(0, 0)
