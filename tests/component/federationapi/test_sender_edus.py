"""The federation sender's EDUs (typing, receipts, presence, to-device,
device lists) from the log topics to fake remote servers, and the queue's
handling of superseded and stale EDUs, poison PDUs, replays and gaps."""

from __future__ import annotations

import json
import time
from typing import Any, cast

from google.protobuf.message import Message
from myelin.clientapi.v1 import edu_log_pb2
from myelin.userapi.v1 import device_list_log_pb2

from common.topics import (
    CLIENTAPI_PRESENCE,
    CLIENTAPI_RECEIPT,
    CLIENTAPI_SEND_TO_DEVICE,
    CLIENTAPI_TYPING,
    USERAPI_DEVICE_LIST_UPDATE,
    Topic,
)
from federationapi.sender.consumers.clientapi import EDUConsumer, wire_message_id
from federationapi.sender.consumers.roomserver import RoomserverOutputConsumer, server_of
from federationapi.sender.queues import DestinationQueues
from federationapi.sender.storage import JoinedMember, OutgoingPDU, SenderDatabase
from roomserver.api import FederationRoomserverAPI
from tests.builders import TestRoom
from tests.component.federationapi.conftest import OUR_NAME, on_each_database
from tests.component.federationapi.sender_fakes import ALICE, Env, env, eventually, room_with

__all__ = ["env"]  # the fixture, imported


def now_ms() -> int:
    return int(time.time() * 1000)


async def append(env: Env, topic: Topic, key: str, message: Message) -> None:
    await env.log.append(topic.name, key.encode(), message.SerializeToString())


def edus_of(edus: list[dict[str, Any]], edu_type: str) -> list[dict[str, Any]]:
    return [edu["content"] for edu in edus if edu["edu_type"] == edu_type]


async def test_local_users_edus_reach_the_servers_that_share_their_rooms(env: Env) -> None:
    remote = await env.destination()
    bystander = await env.destination()  # shares no room with anyone
    bob = f"@bob:{remote.server_name}"
    sender = await env.start_sender()
    room = await room_with(env, bob)
    room_id = room.room_id

    async def bob_is_known() -> bool:
        return remote.server_name in await sender.database.servers_in_room(room_id)

    # Room EDUs go to the servers the sender knows to be in the room.
    await eventually(bob_is_known)
    # Remote users' EDUs (written by the inbound side) and private receipts
    # stay here; each comes before a local one on the same key, so it was
    # handled by the time the local one arrives.
    await append(env, CLIENTAPI_TYPING, room_id, edu_log_pb2.TypingUpdate(
        room_id=room_id, user_id=bob, typing=True, timeout_ms=30000, sent_at_ms=now_ms()))
    await append(env, CLIENTAPI_TYPING, room_id, edu_log_pb2.TypingUpdate(
        room_id=room_id, user_id=ALICE, typing=True, timeout_ms=30000, sent_at_ms=now_ms()))
    await append(env, CLIENTAPI_RECEIPT, room_id, edu_log_pb2.ReceiptUpdate(
        room_id=room_id, user_id=ALICE, receipt_type="m.read.private", event_id="$private", ts_ms=1))
    await append(env, CLIENTAPI_RECEIPT, room_id, edu_log_pb2.ReceiptUpdate(
        room_id=room_id, user_id=ALICE, receipt_type="m.fully_read", event_id="$marker", ts_ms=1))
    await append(env, CLIENTAPI_RECEIPT, room_id, edu_log_pb2.ReceiptUpdate(
        room_id=room_id, user_id=ALICE, receipt_type="m.read", event_id="$read", thread_id="main", ts_ms=5))
    await append(env, CLIENTAPI_PRESENCE, bob, edu_log_pb2.PresenceUpdate(
        user_id=bob, presence="online", last_active_ts_ms=now_ms()))
    await append(env, CLIENTAPI_PRESENCE, ALICE, edu_log_pb2.PresenceUpdate(
        user_id=ALICE, presence="online", status_msg="here", last_active_ts_ms=now_ms() - 1000))
    message_id = json.dumps([ALICE, "ADEV", "m.test", "txn-with-a-long-enough-id"])
    for device in ("D1", "D2"):
        await append(env, CLIENTAPI_SEND_TO_DEVICE, bob, edu_log_pb2.ToDeviceMessage(
            sender=ALICE, sender_device_id="ADEV", target_user_id=bob, target_device_id=device,
            event_type="m.test", content_json=json.dumps({"to": device}).encode(), message_id=message_id))
    await append(env, USERAPI_DEVICE_LIST_UPDATE, bob, device_list_log_pb2.DeviceListUpdate(
        user_id=bob, kind=device_list_log_pb2.DeviceListUpdate.DEVICE, origin_local=False, device_id="X",
        stream_id=1))
    await append(env, USERAPI_DEVICE_LIST_UPDATE, ALICE, device_list_log_pb2.DeviceListUpdate(
        user_id=ALICE, kind=device_list_log_pb2.DeviceListUpdate.DEVICE, origin_local=True, device_id="ADEV",
        stream_id=7, prev_ids=[6], device_display_name="phone",
        device_keys_json=json.dumps({"user_id": ALICE, "device_id": "ADEV"}).encode()))
    await append(env, USERAPI_DEVICE_LIST_UPDATE, ALICE, device_list_log_pb2.DeviceListUpdate(
        user_id=ALICE, kind=device_list_log_pb2.DeviceListUpdate.SIGNING_KEYS, origin_local=True,
        master_key_json=json.dumps({"user_id": ALICE, "usage": ["master"]}).encode()))

    def to_device_devices() -> set[str]:
        return {d for c in edus_of(remote.edus(), "m.direct_to_device")
                for d in c["messages"][bob]}

    wanted = {"m.typing", "m.receipt", "m.presence", "m.device_list_update", "m.signing_key_update"}
    await remote.wait_for(lambda: wanted <= {e["edu_type"] for e in remote.edus()}
                          and to_device_devices() == {"D1", "D2"})
    edus = remote.edus()
    assert edus_of(edus, "m.typing") == [{"room_id": room_id, "user_id": ALICE, "typing": True}]
    assert edus_of(edus, "m.receipt") == [
        {room_id: {"m.read": {ALICE: {"event_ids": ["$read"], "data": {"ts": 5, "thread_id": "main"}}}}}]
    [presence] = edus_of(edus, "m.presence")
    [item] = presence["push"]
    assert item["user_id"] == ALICE and item["presence"] == "online" and item["status_msg"] == "here"
    assert item["last_active_ago"] >= 1000 and item["currently_active"] is True
    for content in edus_of(edus, "m.direct_to_device"):
        assert content["sender"] == ALICE and content["type"] == "m.test"
        assert content["message_id"] == wire_message_id(message_id) and len(content["message_id"]) <= 32
    assert edus_of(edus, "m.device_list_update") == [
        {"user_id": ALICE, "device_id": "ADEV", "stream_id": 7, "prev_id": [6], "deleted": False,
         "device_display_name": "phone", "keys": {"user_id": ALICE, "device_id": "ADEV"}}]
    assert edus_of(edus, "m.signing_key_update") == [
        {"user_id": ALICE, "master_key": {"user_id": ALICE, "usage": ["master"]}}]
    assert bystander.requests == []


@on_each_database
async def test_superseded_and_stale_edus_are_not_sent(env: Env) -> None:
    remote = await env.destination()
    database = SenderDatabase(env.db, OUR_NAME)
    destinations = [remote.server_name]

    def typing(flag: bool) -> str:
        return json.dumps({"edu_type": "m.typing", "content": {"room_id": "!r", "user_id": ALICE, "typing": flag}})

    await database.queue_edu(destinations, typing(True), coalesce_key="t", expires_ts=now_ms() + 60_000)
    await database.queue_edu(destinations, typing(False), coalesce_key="t", expires_ts=now_ms() + 60_000)
    stale = json.dumps({"edu_type": "m.typing", "content": {"room_id": "!old", "user_id": ALICE, "typing": True}})
    await database.queue_edu(destinations, stale, coalesce_key="old", expires_ts=now_ms() - 1)
    queues = DestinationQueues(database, env.client, OUR_NAME)
    await queues.resume()
    try:
        await queues.drained(remote.server_name)
    finally:
        await queues.close()
    assert [e["content"] for e in remote.edus()] == [{"room_id": "!r", "user_id": ALICE, "typing": False}]
    assert await database.queued_count() == 0


async def test_a_refused_transaction_goes_out_again_one_entry_at_a_time_and_the_poison_is_dropped(env: Env) -> None:
    def refuse(body: dict[str, Any]) -> bool:
        return any(pdu["content"]["body"] == "poison" for pdu in body["pdus"])

    remote = await env.destination(refuse=refuse)
    database = SenderDatabase(env.db, OUR_NAME)
    await database.write_room_event("!r:us.test", 1, joined=[JoinedMember("$j", "@bob:x", remote.server_name)],
                                    left_event_ids=[])
    bodies = ["m0", "m1", "poison", "m3", "m4"]
    for i, body in enumerate(bodies):
        pdu = {"type": "m.room.message", "content": {"body": body}}
        await database.write_room_event("!r:us.test", i + 2, joined=[], left_event_ids=[],
                                        pdu=OutgoingPDU(f"$e{i}", json.dumps(pdu)))
    queues = DestinationQueues(database, env.client, OUR_NAME)
    await queues.resume()
    try:
        await queues.drained(remote.server_name)
    finally:
        await queues.close()
    assert remote.bodies() == ["m0", "m1", "m3", "m4"]
    assert len(remote.requests) == 1 + 5  # the whole, then one by one
    assert await database.queued_count() == 0


async def test_a_replayed_output_entry_queues_nothing_twice(env: Env) -> None:
    remote = await env.destination(fail_status=503)
    sender = await env.start_sender()
    room = await room_with(env, f"@bob:{remote.server_name}")
    message = await env.output.write(room.message(ALICE, "once"))
    await remote.wait_for(lambda: len(remote.requests) >= 1)
    assert await sender.database.queued_count(remote.server_name) == 1
    # The log hands the entry over again to a new process (a crash before
    # its offset was committed).
    restarted = RoomserverOutputConsumer(sender.database, sender.queues,
                                         cast(FederationRoomserverAPI, env.roomserver), OUR_NAME)
    await restarted.on_new_room_event(message)
    assert await sender.database.queued_count(remote.server_name) == 1


async def test_missed_entries_make_the_sender_read_the_rooms_members(env: Env) -> None:
    remote = await env.destination()
    bob = f"@bob:{remote.server_name}"
    room = TestRoom("12", creator=ALICE, server_name=OUR_NAME)
    bob_join = room.join(bob)
    env.roomserver.members[room.room_id] = [room.creator_join, bob_join]
    await env.start_sender()
    # The log no longer holds the room's first entries.
    env.output.positions[room.room_id] = len(room.events) + 10
    await env.output.write(room.message(ALICE, "after the gap"))
    await remote.wait_for(lambda: "after the gap" in remote.bodies())
    assert env.roomserver.membership_queries == 1


def test_only_valid_server_names_are_destinations() -> None:
    assert server_of("@bob:example.org:8448") == "example.org:8448"
    assert server_of("@bob:[::1]:8448") == "[::1]:8448"
    assert server_of("@bob:bad_name!") == ""
    assert server_of("@nobody") == ""


async def test_a_presence_update_without_a_status_message_keeps_the_last_one_set(env: Env) -> None:
    remote = await env.destination()
    database = SenderDatabase(env.db, OUR_NAME)
    await database.write_room_event("!r:us.test", 1, left_event_ids=[], joined=[
        JoinedMember("$a", ALICE, OUR_NAME), JoinedMember("$b", f"@bob:{remote.server_name}", remote.server_name)])
    queues = DestinationQueues(database, env.client, OUR_NAME)
    consumer = EDUConsumer(database, queues, OUR_NAME)
    await consumer.on_presence(edu_log_pb2.PresenceUpdate(user_id=ALICE, presence="online", status_msg="lunch",
                                                          last_active_ts_ms=now_ms()))
    await queues.drained(remote.server_name)
    await consumer.on_presence(edu_log_pb2.PresenceUpdate(user_id=ALICE, presence="unavailable",
                                                          last_active_ts_ms=now_ms()))
    try:
        await queues.drained(remote.server_name)
    finally:
        await queues.close()
    pushes = [content["push"][0] for content in edus_of(remote.edus(), "m.presence")]
    assert [(p["presence"], p["status_msg"]) for p in pushes] == [("online", "lunch"), ("unavailable", "lunch")]
