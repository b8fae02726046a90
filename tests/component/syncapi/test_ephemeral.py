"""Typing, receipts and read markers, presence and to-device messages in
/sync: fed through the client API's EDU topics on the real embedded log, and
presence also through /presence and /sync's set_presence."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from myelin.clientapi.v1 import edu_log_pb2

from common.topics import CLIENTAPI_RECEIPT, CLIENTAPI_SEND_TO_DEVICE, CLIENTAPI_TYPING
from syncapi.internal.sync import TO_DEVICE_LIMIT
from syncapi.tokens import STREAM_NAMES, StreamToken
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, running_env, shared_room, wait_until

V3 = "/_matrix/client/v3"


def now_ms() -> int:
    return int(time.time() * 1000)


def ephemeral(body: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = body["rooms"]["join"].get(room_id)
    if room is None:
        return []
    return [e for e in room["ephemeral"]["events"] if e["type"] == event_type]


async def typing(env: Env, room_id: str, user_id: str, is_typing: bool, timeout_ms: int = 60_000) -> None:
    await env.log.append(CLIENTAPI_TYPING.name, room_id.encode(), edu_log_pb2.TypingUpdate(
        room_id=room_id, user_id=user_id, typing=is_typing, timeout_ms=timeout_ms,
        sent_at_ms=now_ms()).SerializeToString())


async def receipt(env: Env, room_id: str, user_id: str, receipt_type: str, event_id: str,
                  thread_id: str = "") -> None:
    position = env.syncapi.notifier.stream_position("receipt")
    await env.log.append(CLIENTAPI_RECEIPT.name, room_id.encode(), edu_log_pb2.ReceiptUpdate(
        room_id=room_id, user_id=user_id, receipt_type=receipt_type, event_id=event_id, thread_id=thread_id,
        ts_ms=1234).SerializeToString())
    await wait_until(lambda: env.syncapi.notifier.stream_position("receipt") > position)


async def to_device(env: Env, user_id: str, device_id: str, n: int, message_id: str | None = None) -> None:
    await env.log.append(CLIENTAPI_SEND_TO_DEVICE.name, user_id.encode(), edu_log_pb2.ToDeviceMessage(
        sender=ALICE, sender_device_id="ADEV", target_user_id=user_id, target_device_id=device_id,
        event_type="m.test", content_json=json.dumps({"n": n}).encode(),
        message_id=message_id or f"msg-{n}").SerializeToString())


# -- the token ----------------------------------------------------------------------------------


async def test_next_batch_has_a_position_per_stream(env: Env) -> None:
    await shared_room(env, BOB)
    body = await env.sync(env.token(BOB))
    token = StreamToken.parse(body["next_batch"])
    assert body["next_batch"].count("_") == len(STREAM_NAMES) - 1
    assert token.pdu > 0 and token.presence > 0  # syncing marked BOB online


# -- typing -------------------------------------------------------------------------------------


async def test_typing_wakes_members_and_ends(env: Env) -> None:
    room = await shared_room(env, BOB)
    bob, carol = env.token(BOB), env.token(CAROL)
    since = await env.next_batch(bob)
    carol_since = await env.next_batch(carol)

    poll = asyncio.create_task(env.sync(bob, since=since, timeout=10_000))
    carol_poll = asyncio.create_task(env.sync(carol, since=carol_since, timeout=500))
    await asyncio.sleep(0.1)
    await typing(env, room.room_id, ALICE, True)
    body = await asyncio.wait_for(poll, 5)
    assert ephemeral(body, room.room_id, "m.typing") == [{"type": "m.typing", "content": {"user_ids": [ALICE]}}]
    # Not in the room: not woken, told nothing.
    carol_body = await carol_poll
    assert carol_body["rooms"]["join"] == {}

    # A renewal changes nothing visible; stopping does.
    since = body["next_batch"]
    await typing(env, room.room_id, ALICE, True)
    await typing(env, room.room_id, ALICE, False)
    body = await env.sync(bob, since=since, timeout=5000)
    assert ephemeral(body, room.room_id, "m.typing") == [{"type": "m.typing", "content": {"user_ids": []}}]
    # An initial sync shows nobody typing: no m.typing at all.
    assert ephemeral(await env.sync(bob), room.room_id, "m.typing") == []


async def test_typing_expires_after_its_timeout(env: Env) -> None:
    room = await shared_room(env, BOB)
    bob = env.token(BOB)
    since = await env.next_batch(bob)
    await typing(env, room.room_id, ALICE, True, timeout_ms=300)
    body = await env.sync(bob, since=since, timeout=5000)
    assert ephemeral(body, room.room_id, "m.typing")[0]["content"]["user_ids"] == [ALICE]
    started = time.monotonic()
    body = await env.sync(bob, since=body["next_batch"], timeout=5000)
    assert ephemeral(body, room.room_id, "m.typing")[0]["content"]["user_ids"] == []
    assert time.monotonic() - started < 3


# -- receipts -----------------------------------------------------------------------------------


async def test_receipts_aggregated_private_ones_to_their_owner(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    first = room.message(ALICE, "one")
    second = room.message(ALICE, "two")
    await env.send_room(room)
    alice, bob = env.token(ALICE), env.token(BOB)
    alice_since = await env.next_batch(alice)
    bob_since = await env.next_batch(bob)

    await receipt(env, room.room_id, ALICE, "m.read", second.event_id)
    await receipt(env, room.room_id, BOB, "m.read", second.event_id)
    await receipt(env, room.room_id, BOB, "m.read", first.event_id, thread_id="main")
    await receipt(env, room.room_id, ALICE, "m.read.private", first.event_id)

    expected_public = {
        second.event_id: {"m.read": {ALICE: {"ts": 1234}, BOB: {"ts": 1234}}},
        first.event_id: {"m.read": {BOB: {"ts": 1234, "thread_id": "main"}}},
    }
    bob_body = await env.sync(bob, since=bob_since)
    assert ephemeral(bob_body, room.room_id, "m.receipt") == [{"type": "m.receipt", "content": expected_public}]
    alice_body = await env.sync(alice, since=alice_since)
    [alice_receipts] = ephemeral(alice_body, room.room_id, "m.receipt")
    assert alice_receipts["content"][first.event_id]["m.read.private"] == {ALICE: {"ts": 1234}}
    # An initial sync has them all (the latest per user, type and thread).
    [initial] = ephemeral(await env.sync(bob), room.room_id, "m.receipt")
    assert initial["content"] == expected_public
    # Incremental: only what changed.
    third = room.message(BOB, "three")
    await env.send(third)
    await receipt(env, room.room_id, ALICE, "m.read", third.event_id)
    body = await env.sync(bob, since=bob_body["next_batch"])
    assert ephemeral(body, room.room_id, "m.receipt")[0]["content"] == {
        third.event_id: {"m.read": {ALICE: {"ts": 1234}}}}
    # A private receipt does not even wake the others.
    assert env.syncapi.notifier.has_news(BOB, StreamToken.parse(body["next_batch"])) is False
    await receipt(env, room.room_id, ALICE, "m.read.private", second.event_id)
    assert env.syncapi.notifier.has_news(BOB, StreamToken.parse(body["next_batch"])) is False


async def test_fully_read_receipts_are_left_to_account_data(env: Env) -> None:
    """Read markers come to /sync as account data: a receipt of type
    m.fully_read is ignored, never an m.receipt."""
    room = await shared_room(env, BOB)
    message = room.message(ALICE, "read me")
    await env.send(message)
    alice = env.token(ALICE)
    since = await env.next_batch(alice)
    await env.log.append(CLIENTAPI_RECEIPT.name, room.room_id.encode(), edu_log_pb2.ReceiptUpdate(
        room_id=room.room_id, user_id=ALICE, receipt_type="m.fully_read", event_id=message.event_id,
        ts_ms=1).SerializeToString())
    await receipt(env, room.room_id, ALICE, "m.read", message.event_id)
    body = await env.sync(alice, since=since)
    [receipts] = ephemeral(body, room.room_id, "m.receipt")
    assert receipts["content"] == {message.event_id: {"m.read": {ALICE: {"ts": 1234}}}}
    assert all(e["type"] != "m.fully_read" for e in body["rooms"]["join"][room.room_id]["account_data"]["events"])


async def test_a_replayed_receipt_changes_nothing(env: Env) -> None:
    room = await shared_room(env, BOB)
    event_id = room.events[-1].event_id
    assert await env.syncapi.database.write_receipt(room.room_id, "m.read", BOB, "", event_id, 5) is not None
    assert await env.syncapi.database.write_receipt(room.room_id, "m.read", BOB, "", event_id, 5) is None


# -- presence -----------------------------------------------------------------------------------


async def test_presence_put_get_and_sync(env: Env) -> None:
    await shared_room(env, BOB)
    alice, bob, carol = env.token(ALICE), env.token(BOB), env.token(CAROL)
    bob_since = (await env.sync(bob, set_presence="offline"))["next_batch"]
    poll = asyncio.create_task(env.sync(bob, since=bob_since, timeout=10_000, set_presence="offline"))
    await asyncio.sleep(0.1)
    response = await env.client.put(f"{V3}/presence/{ALICE}/status", json={
        "presence": "unavailable", "status_msg": "lunch"}, headers={"Authorization": f"Bearer {alice}"})
    assert response.status_code == 200, response.text
    body = await asyncio.wait_for(poll, 5)
    [event] = [e for e in body["presence"]["events"] if e["sender"] == ALICE]
    assert event["type"] == "m.presence"
    assert event["content"]["presence"] == "unavailable"
    assert event["content"]["status_msg"] == "lunch"
    assert event["content"]["currently_active"] is False
    assert 0 <= event["content"]["last_active_ago"] < 5000

    # GET: oneself and those sharing a room; CAROL shares none.
    for token in (alice, bob):
        response = await env.get(f"{V3}/presence/{ALICE}/status", token)
        assert response.status_code == 200, response.text
        assert response.json()["presence"] == "unavailable" and response.json()["status_msg"] == "lunch"
    response = await env.get(f"{V3}/presence/{ALICE}/status", carol)
    assert response.status_code == 403
    # Nobody who shares a room with CAROL hears of her presence.
    await env.sync(carol)
    response = await env.get(f"{V3}/presence/{CAROL}/status", carol)
    assert response.json()["presence"] == "online" and response.json()["currently_active"] is True

    # /sync marks ALICE online by default, keeping her status message.
    await asyncio.sleep(0.01)
    await env.sync(alice)
    body = await env.sync(bob, since=body["next_batch"], set_presence="offline")
    senders = {e["sender"]: e["content"] for e in body["presence"]["events"]}
    assert CAROL not in senders
    assert senders[ALICE]["presence"] == "online" and senders[ALICE]["status_msg"] == "lunch"
    assert senders[ALICE]["currently_active"] is True


async def test_presence_refusals(env: Env) -> None:
    alice, bob = env.token(ALICE), env.token(BOB)
    headers = {"Authorization": f"Bearer {bob}"}
    response = await env.client.put(f"{V3}/presence/{ALICE}/status", json={"presence": "online"}, headers=headers)
    assert response.status_code == 403 and response.json()["errcode"] == "M_FORBIDDEN"
    for body, errcode in (({}, "M_MISSING_PARAM"), ({"presence": "away"}, "M_INVALID_PARAM"),
                          ({"presence": "online", "status_msg": 3}, "M_BAD_JSON")):
        response = await env.client.put(f"{V3}/presence/{BOB}/status", json=body, headers=headers)
        assert response.status_code == 400 and response.json()["errcode"] == errcode, body
    response = await env.get(f"{V3}/sync", alice, set_presence="away")
    assert response.status_code == 400 and response.json()["errcode"] == "M_INVALID_PARAM"
    # Never seen: offline.
    response = await env.get(f"{V3}/presence/{BOB}/status", bob)
    assert response.json() == {"presence": "offline"}


async def test_set_presence_unavailable_and_offline(env: Env) -> None:
    await shared_room(env, BOB)
    alice = env.token(ALICE)
    await env.sync(alice, set_presence="offline")
    response = await env.get(f"{V3}/presence/{ALICE}/status", alice)
    assert response.json() == {"presence": "offline"}  # offline: not marked online, nothing written
    await env.sync(alice, set_presence="unavailable")
    response = await env.get(f"{V3}/presence/{ALICE}/status", alice)
    assert response.json()["presence"] == "unavailable"


# -- to-device ----------------------------------------------------------------------------------


async def test_to_device_delivered_until_acknowledged_per_device(env: Env) -> None:
    bob, bob2 = env.token(BOB, "DEV"), env.token(BOB, "DEV2")
    since = await env.next_batch(bob)
    since2 = await env.next_batch(bob2)
    poll = asyncio.create_task(env.sync(bob, since=since, timeout=10_000))
    await asyncio.sleep(0.1)
    await to_device(env, BOB, "DEV", 1)
    body = await asyncio.wait_for(poll, 5)
    assert body["to_device"]["events"] == [{"type": "m.test", "sender": ALICE, "content": {"n": 1}}]
    # Not acknowledged yet: the same `since` gets it again.
    again = await env.sync(bob, since=since)
    assert again["to_device"]["events"] == body["to_device"]["events"]
    # Syncing with the next token acknowledges it: it is gone for good.
    await to_device(env, BOB, "DEV", 2)
    await wait_until(lambda: env.syncapi.notifier.stream_position("to_device") >= 2)
    later = await env.sync(bob, since=body["next_batch"])
    assert [e["content"]["n"] for e in later["to_device"]["events"]] == [2]
    assert (await env.sync(bob, since=since))["to_device"]["events"] == [{"type": "m.test", "sender": ALICE,
                                                                           "content": {"n": 2}}]
    # The other device got nothing.
    other = await env.sync(bob2, since=since2)
    assert other["to_device"]["events"] == []


async def test_to_device_stored_once_and_paged(env: Env) -> None:
    bob = env.token(BOB, "DEV")
    await to_device(env, BOB, "DEV", 0, message_id="same")
    await to_device(env, BOB, "DEV", 0, message_id="same")
    for n in range(1, TO_DEVICE_LIMIT + 5):
        await to_device(env, BOB, "DEV", n)
    await wait_until(lambda: env.syncapi.notifier.stream_position("to_device") >= TO_DEVICE_LIMIT + 5)
    first = await env.sync(bob)
    got = [e["content"]["n"] for e in first["to_device"]["events"]]
    assert got == list(range(TO_DEVICE_LIMIT))
    rest = await env.sync(bob, since=first["next_batch"], timeout=5000)
    assert [e["content"]["n"] for e in rest["to_device"]["events"]] == list(range(TO_DEVICE_LIMIT, TO_DEVICE_LIMIT + 5))
    done = await env.sync(bob, since=rest["next_batch"])
    assert done["to_device"]["events"] == []


async def test_a_room_joined_since_the_token_brings_its_receipts_and_typers(env: Env) -> None:
    bob = env.token(BOB)
    since = await env.next_batch(bob)
    room = TestRoom()
    message = room.message(ALICE, "before bob")
    await env.send_room(room)
    await receipt(env, room.room_id, ALICE, "m.read", message.event_id)
    await typing(env, room.room_id, ALICE, True)
    await wait_until(lambda: env.syncapi.notifier.stream_position("typing") >= 1)
    await env.send(room.join(BOB))
    body = await env.sync(bob, since=since)
    assert room.room_id in body["rooms"]["join"]
    [receipts] = ephemeral(body, room.room_id, "m.receipt")
    assert receipts["content"] == {message.event_id: {"m.read": {ALICE: {"ts": 1234}}}}
    assert ephemeral(body, room.room_id, "m.typing")[0]["content"]["user_ids"] == [ALICE]


@pytest.mark.postgres
async def test_receipts_presence_and_to_device_on_postgres(tmp_path: Path, fresh_postgres_database: str) -> None:
    async with running_env(tmp_path, fresh_postgres_database) as env:
        room = TestRoom()
        room.join(BOB)
        message = room.message(ALICE, "pg")
        await env.send_room(room)
        alice, bob = env.token(ALICE), env.token(BOB, "DEV")
        since = await env.next_batch(bob)
        await receipt(env, room.room_id, ALICE, "m.read", message.event_id)
        await receipt(env, room.room_id, ALICE, "m.read", message.event_id, thread_id="main")
        await env.sync(alice, set_presence="unavailable")
        await to_device(env, BOB, "DEV", 7)
        await wait_until(lambda: env.syncapi.notifier.stream_position("to_device") >= 1)
        body = await env.sync(bob, since=since)
        [receipts] = ephemeral(body, room.room_id, "m.receipt")
        # Two receipts of one user for one event (unthreaded, then in "main"):
        # one m.receipt entry can hold one, the latest.
        assert receipts["content"] == {message.event_id: {"m.read": {ALICE: {"ts": 1234, "thread_id": "main"}}}}
        assert {e["sender"]: e["content"]["presence"] for e in body["presence"]["events"]}[ALICE] == "unavailable"
        assert [e["content"] for e in body["to_device"]["events"]] == [{"n": 7}]
        assert (await env.sync(bob, since=body["next_batch"]))["to_device"]["events"] == []


async def test_a_presence_refresh_wakes_nobody(env: Env) -> None:
    """A syncing client's periodic refresh of last_active wakes nobody; a
    change of presence does."""
    await shared_room(env, BOB)
    bob = env.token(BOB)
    body = await env.sync(bob, set_presence="offline")
    consumer = env.syncapi.edu_consumer
    await consumer.on_presence(edu_log_pb2.PresenceUpdate(user_id=ALICE, presence="online",
                                                          last_active_ts_ms=now_ms() - 1000))
    assert env.syncapi.notifier.has_news(BOB, StreamToken.parse(body["next_batch"])) is True
    body = await env.sync(bob, since=body["next_batch"], set_presence="offline")
    await consumer.on_presence(edu_log_pb2.PresenceUpdate(user_id=ALICE, presence="online",
                                                          last_active_ts_ms=now_ms()))
    assert env.syncapi.notifier.has_news(BOB, StreamToken.parse(body["next_batch"])) is False
    # An older record (replayed) changes nothing at all.
    assert await env.syncapi.database.write_presence(ALICE, "offline", None, 5, keep_status=True) is None
    await consumer.on_presence(edu_log_pb2.PresenceUpdate(user_id=ALICE, presence="unavailable",
                                                          last_active_ts_ms=now_ms() + 1))
    assert env.syncapi.notifier.has_news(BOB, StreamToken.parse(body["next_batch"])) is True
    body = await env.sync(bob, since=body["next_batch"], set_presence="offline")
    assert [e["content"]["presence"] for e in body["presence"]["events"] if e["sender"] == ALICE] == ["unavailable"]


async def test_users_who_stop_syncing_go_offline(env: Env) -> None:
    from syncapi.internal.presence import SYNC_ONLINE_TIMEOUT_MS

    await shared_room(env, BOB)
    alice, bob = env.token(ALICE), env.token(BOB)
    body = await env.sync(bob, set_presence="offline")
    await env.sync(alice)
    writer = env.syncapi.presence
    ended = now_ms()
    # Still connected (a long poll in progress): not timed out.
    poll = asyncio.create_task(env.sync(alice, since=await env.next_batch(alice), timeout=1000))
    await asyncio.sleep(0.1)
    assert await writer.time_out_idle(now=ended + SYNC_ONLINE_TIMEOUT_MS + 5000) == []
    await poll
    assert await writer.time_out_idle(now=now_ms() + 1000) == []  # too recent
    assert await writer.time_out_idle(now=now_ms() + SYNC_ONLINE_TIMEOUT_MS + 1000) == [ALICE]
    body = await env.sync(bob, since=body["next_batch"], set_presence="offline")
    [content] = [e["content"] for e in body["presence"]["events"] if e["sender"] == ALICE]
    assert content["presence"] == "offline" and content["currently_active"] is False
    # Offline users are not timed out again; syncing brings them back online.
    assert await writer.time_out_idle(now=now_ms() + 10 * SYNC_ONLINE_TIMEOUT_MS) == []
    await env.sync(alice)
    response = await env.get(f"{V3}/presence/{ALICE}/status", bob)
    assert response.json()["presence"] == "online"
