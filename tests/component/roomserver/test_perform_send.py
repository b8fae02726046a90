"""PerformSendEvent: the room server builds, signs and inputs a local user's
event, and keeps one accepted event per client transaction, through both
bindings and across a restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from myelin.roomserver.v1 import events_pb2
from myelin.roomserver.v1 import roomserver_pb2 as pb

from common import errors
from common.log import Log
from matrixlib.events import Event
from matrixlib.room_versions import get_room_version
from matrixlib.signing import verify_event_signature
from roomserver.api import RoomserverAPI
from tests.builders import TEST_SERVER_NAME, TEST_SIGNING_KEY, TestRoom, input_event
from tests.component.roomserver.conftest import Running, make_config, read_output, start_roomserver

ALICE = "@alice:test"
BOB = "@bob:test"
CAROL = "@carol:test"

ACCEPTED = pb.INPUT_OUTCOME_ACCEPTED
DUPLICATE = pb.INPUT_OUTCOME_DUPLICATE
REJECTED = pb.INPUT_OUTCOME_REJECTED


async def _room(api: RoomserverAPI) -> TestRoom:
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    response = await api.input_room_events(pb.InputRoomEventsRequest(
        events=[input_event(e) for e in room.events], wait=True))
    assert {r.outcome for r in response.results} == {ACCEPTED}
    return room


def _send(room_id: str, sender: str, body: str, txn: tuple[str, str] | None = None, *,
          scope: str = "send/m.room.message") -> pb.PerformSendEventRequest:
    request = pb.PerformSendEventRequest(room_id=room_id, sender=sender, event_type="m.room.message",
                                         content_json=json.dumps({"msgtype": "m.text", "body": body}).encode())
    if txn is not None:
        device, txn_id = txn
        request.transaction_id.CopyFrom(events_pb2.TransactionID(
            user_id=sender, device_id=device, transaction_id=txn_id, scope=scope))
    return request


async def _event(api: RoomserverAPI, event_id: str) -> Event:
    found = await api.query_events_by_id(pb.QueryEventsByIDRequest(event_ids=[event_id]))
    assert len(found.events) == 1
    proto = found.events[0]
    return Event.from_json(proto.pdu_json, get_room_version(proto.room_version), proto.event_id)


async def _messages_in_output(log: Log) -> list[str]:
    return [o.new_room_event.event.event_id for o in await read_output(log)
            if o.HasField("new_room_event") and b'"m.room.message"' in o.new_room_event.event.pdu_json]


async def test_the_event_is_built_on_the_current_state_and_signed(api: RoomserverAPI, running: Running) -> None:
    room = await _room(api)
    answer = await api.perform_send_event(_send(room.room_id, BOB, "hello", ("PHONE", "t1")))
    assert answer.outcome == ACCEPTED
    event = await _event(api, answer.event_id)
    assert (event.sender, event.type, event.content["body"]) == (BOB, "m.room.message", "hello")
    assert event.prev_event_ids == [room.events[-1].event_id]
    assert set(event.auth_event_ids) == {room.state[("m.room.power_levels", "")].event_id,
                                         room.state[("m.room.member", BOB)].event_id}
    verify_event_signature(event.pdu, event.room_version, TEST_SERVER_NAME, TEST_SIGNING_KEY.key_id,
                           TEST_SIGNING_KEY.verify_key)
    # The next one follows it, and readers see the device's transaction ID.
    second = await api.perform_send_event(_send(room.room_id, ALICE, "next"))
    assert (await _event(api, second.event_id)).prev_event_ids == [answer.event_id]
    outputs = {o.new_room_event.event.event_id: o.new_room_event for o in await read_output(running.log)
               if o.HasField("new_room_event")}
    assert outputs[answer.event_id].transaction_id.transaction_id == "t1"
    assert outputs[answer.event_id].transaction_id.device_id == "PHONE"


async def test_a_transaction_sends_one_event(api: RoomserverAPI, running: Running) -> None:
    room = await _room(api)
    first = await api.perform_send_event(_send(room.room_id, BOB, "once", ("PHONE", "t1")))
    again = await api.perform_send_event(_send(room.room_id, BOB, "once", ("PHONE", "t1")))
    assert first.outcome == ACCEPTED
    assert (again.outcome, again.event_id) == (DUPLICATE, first.event_id)
    # The same ID on another path, from another device, or in another room is another transaction.
    other_scope = await api.perform_send_event(_send(room.room_id, BOB, "b", ("PHONE", "t1"), scope="x"))
    other_device = await api.perform_send_event(_send(room.room_id, BOB, "c", ("LAPTOP", "t1")))
    assert other_scope.outcome == other_device.outcome == ACCEPTED
    assert len({first.event_id, other_scope.event_id, other_device.event_id}) == 3
    # Both at once: one event, and both answers name it.
    together = await asyncio.gather(*(api.perform_send_event(_send(room.room_id, BOB, "race", ("PHONE", "t2")))
                                      for _ in range(2)))
    assert together[0].event_id == together[1].event_id
    assert sorted(a.outcome for a in together) == [ACCEPTED, DUPLICATE]
    messages = await _messages_in_output(running.log)
    assert sorted(messages) == sorted([first.event_id, other_scope.event_id, other_device.event_id,
                                       together[0].event_id])


async def test_a_refused_transaction_may_be_sent_again(api: RoomserverAPI) -> None:
    room = await _room(api)
    refused = await api.perform_send_event(_send(room.room_id, CAROL, "not a member", ("D", "t1")))
    assert refused.outcome == REJECTED
    joined = room.join(CAROL)
    await api.input_room_events(pb.InputRoomEventsRequest(events=[input_event(joined)], wait=True))
    retried = await api.perform_send_event(_send(room.room_id, CAROL, "now a member", ("D", "t1")))
    assert retried.outcome == ACCEPTED
    assert retried.event_id != refused.event_id


async def test_bad_requests_change_nothing(api: RoomserverAPI) -> None:
    room = await _room(api)
    before = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    unknown = _send("!nowhere:test", BOB, "x")
    with pytest.raises(errors.NotFound):
        await api.perform_send_event(unknown)
    with pytest.raises(errors.InvalidParam):
        await api.perform_send_event(_send(room.room_id, "@eve:elsewhere.example", "not ours"))
    with pytest.raises(errors.InvalidParam):
        await api.perform_send_event(_send("no-room-id", BOB, "x"))
    not_json = _send(room.room_id, BOB, "x")
    not_json.content_json = b"{not json"
    with pytest.raises(errors.NotJSON):
        await api.perform_send_event(not_json)
    not_object = _send(room.room_id, BOB, "x")
    not_object.content_json = b"[1]"
    with pytest.raises(errors.BadJSON):
        await api.perform_send_event(not_object)
    out_of_range = _send(room.room_id, BOB, "x")
    out_of_range.content_json = b'{"n": 123456789012345678901234567890}'
    with pytest.raises(errors.BadJSON):
        await api.perform_send_event(out_of_range)
    with pytest.raises(errors.TooLarge):
        await api.perform_send_event(_send(room.room_id, BOB, "x" * 70_000))
    after = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert list(after.latest_event_ids) == list(before.latest_event_ids)


async def test_the_transaction_outlives_a_restart(tmp_path: Path, log: Log) -> None:
    first_instance = await start_roomserver(make_config(tmp_path), log)
    try:
        room = await _room(first_instance.component.api)
        sent = await first_instance.component.api.perform_send_event(_send(room.room_id, BOB, "m", ("D", "t1")))
    finally:
        await first_instance.stop()
    second_instance = await start_roomserver(make_config(tmp_path), log)
    try:
        again = await second_instance.component.api.perform_send_event(_send(room.room_id, BOB, "m", ("D", "t1")))
        assert (again.outcome, again.event_id) == (DUPLICATE, sent.event_id)
        # Forgotten once old: the ID then sends a new event.
        assert await second_instance.component.storage.forget_old_transactions(2 ** 62) == 1
        later = await second_instance.component.api.perform_send_event(_send(room.room_id, BOB, "m", ("D", "t1")))
        assert later.outcome == ACCEPTED and later.event_id != sent.event_id
    finally:
        await second_instance.stop()
