"""The sync handler's per-user memos (ignored users, to-device acks) stay
within their bound however many users sync, and a user or device forgotten
to keep that bound still gets the right answer (issue 6)."""

from __future__ import annotations

from common.lru_cache import LRUCache
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, shared_room, wait_until
from tests.component.syncapi.test_account_data import change
from tests.component.syncapi.test_ephemeral import to_device

DAVE = "@dave:test"


async def test_ignored_users_still_left_out_after_the_memo_is_forgotten(env: Env) -> None:
    handler = env.syncapi.sync_handler
    handler._ignored = LRUCache(1)
    room = await shared_room(env, BOB, CAROL, DAVE)
    bob = env.token(BOB)
    await change(env, BOB, "m.ignored_user_list", {"ignored_users": {CAROL: {}}})
    first = await env.sync(bob)  # Bob's ignored list is read and kept
    assert handler._ignored.get(BOB) is not None
    await env.sync(env.token(DAVE))  # Dave's takes the only place
    assert len(handler._ignored) == 1 and handler._ignored.get(BOB) is None
    hello, hi = room.message(CAROL, "hello"), room.message(ALICE, "hi")
    await env.send(hello, hi)
    body = await env.sync(bob, since=first["next_batch"], timeout=5000)
    timeline = [e["event_id"] for e in body["rooms"]["join"][room.room_id]["timeline"]["events"]]
    assert timeline == [hi.event_id]


async def test_many_users_ignored_memos_stay_bounded(env: Env) -> None:
    handler = env.syncapi.sync_handler
    handler._ignored = LRUCache(3)
    room = TestRoom()
    users = [f"@u{i}:test" for i in range(8)]
    for user in users:
        room.join(user)
    await env.send_room(room)
    for user in users:
        await env.sync(env.token(user))
        assert len(handler._ignored) <= 3


async def test_an_ack_after_the_memo_is_forgotten_still_deletes_the_messages(env: Env) -> None:
    handler = env.syncapi.sync_handler
    handler._to_device_acked = LRUCache(1)
    bob, bob2 = env.token(BOB, "DEV"), env.token(BOB, "DEV2")
    since = await env.next_batch(bob)
    since2 = await env.next_batch(bob2)

    async def send(device_id: str, n: int, position: int) -> None:
        await to_device(env, BOB, device_id, n)
        await wait_until(lambda: env.syncapi.notifier.stream_position("to_device") >= position)

    await send("DEV", 1, 1)
    first = await env.sync(bob, since=since)
    assert [e["content"]["n"] for e in first["to_device"]["events"]] == [1]
    await send("DEV", 2, 2)
    second = await env.sync(bob, since=first["next_batch"])  # acknowledges 1: remembered
    assert [e["content"]["n"] for e in second["to_device"]["events"]] == [2]
    assert handler._to_device_acked.get((BOB, "DEV")) is not None
    # The other device's acknowledgement takes the only place.
    await send("DEV2", 5, 3)
    other = await env.sync(bob2, since=since2)
    await send("DEV2", 6, 4)
    await env.sync(bob2, since=other["next_batch"])
    assert len(handler._to_device_acked) == 1 and handler._to_device_acked.get((BOB, "DEV")) is None
    # Message 2 is acknowledged while DEV is forgotten: deleted still, and
    # message 3 (not acknowledged) is kept.
    await send("DEV", 3, 5)
    third = await env.sync(bob, since=second["next_batch"])
    assert [e["content"]["n"] for e in third["to_device"]["events"]] == [3]
    assert [e["content"]["n"] for e in (await env.sync(bob, since=since))["to_device"]["events"]] == [3]
