"""The room server end to end, through both bindings (``api`` is the
in-process implementation or a gRPC client on port 0), on SQLite and the
embedded log; one run on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from myelin.roomserver.v1 import events_pb2, input_log_pb2, output_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as pb
from sqlalchemy import func, select

from common import errors
from common.log import Log
from common.topics import ROOMSERVER_INPUT
from matrixlib.events import MEMBER, NAME, Event
from roomserver.api import RoomserverAPI
from roomserver.component import open_roomserver
from roomserver.storage.tables.events import events as events_table
from roomserver.storage.tables.input_failures import input_failures
from tests.builders import TEST_SIGNING_KEY, TestRoom, input_event
from tests.component.roomserver.conftest import Running, make_config, read_output, start_roomserver

ALICE = "@alice:test"
BOB = "@bob:test"
CAROL = "@carol:test"
REMOTE = "@dave:remote.example"

NEW = input_log_pb2.INPUT_KIND_NEW
OUTLIER = input_log_pb2.INPUT_KIND_OUTLIER
OLD = input_log_pb2.INPUT_KIND_OLD


async def send(api: RoomserverAPI, events: Sequence[Event], kind: int = NEW
               ) -> list[pb.InputEventResult]:
    response = await api.input_room_events(pb.InputRoomEventsRequest(
        events=[input_event(e, kind) for e in events], wait=True))
    assert [r.event_id for r in response.results] == [e.event_id for e in events]
    return list(response.results)


def outcomes(results: Sequence[pb.InputEventResult]) -> list[int]:
    return [r.outcome for r in results]


def ids(events: Sequence[Event]) -> list[str]:
    return [e.event_id for e in events]


def new_room_events(outputs: Sequence[output_log_pb2.OutputEvent]) -> list[output_log_pb2.NewRoomEvent]:
    return [o.new_room_event for o in outputs if o.WhichOneof("payload") == "new_room_event"]


def proto_ids(protos: Sequence[events_pb2.Event]) -> list[str]:
    return [p.event_id for p in protos]


@pytest.mark.parametrize("version", ["1", "4", "10", "12"])
async def test_room_lifecycle_and_state(api: RoomserverAPI, version: str) -> None:
    room = TestRoom(version, creator=ALICE)
    room.join(BOB)
    room.message(BOB, "hello")
    name = room.set_state(NAME, {"name": "Room"}, sender=ALICE)
    last = room.message(ALICE, "hi bob")
    results = await send(api, room.events)
    assert outcomes(results) == [pb.INPUT_OUTCOME_ACCEPTED] * len(room.events)

    latest = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert latest.room_exists and latest.room_version == version
    assert list(latest.latest_event_ids) == [last.event_id]
    assert latest.depth == last.depth + 1
    assert sorted(proto_ids(latest.state_events)) == sorted(e.event_id for e in room.state.values())
    for proto in latest.state_events:
        assert proto.room_version == version
        assert json.loads(proto.pdu_json)["type"] in {"m.room.create", "m.room.member", "m.room.power_levels",
                                                      "m.room.join_rules", "m.room.name"}

    only_name = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(
        room_id=room.room_id, state_to_fetch=[events_pb2.StateKeyTuple(event_type=NAME, state_key="")]))
    assert proto_ids(only_name.state_events) == [name.event_id]
    members = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(
        room_id=room.room_id, state_to_fetch=[events_pb2.StateKeyTuple(event_type=MEMBER, state_key=BOB)]))
    assert proto_ids(members.state_events) == [room.state[(MEMBER, BOB)].event_id]

    info = await api.query_room_info(pb.QueryRoomInfoRequest(room_id=room.room_id))
    assert info.room_exists and not info.is_stub
    assert info.room_version == version
    assert info.create_event_id == room.create.event_id
    assert info.joined_member_count == 2
    assert list(info.latest_event_ids) == [last.event_id]
    assert list(info.joined_servers) == []  # only when asked for
    with_servers = await api.query_room_info(pb.QueryRoomInfoRequest(room_id=room.room_id,
                                                                      include_joined_servers=True))
    assert sorted(with_servers.joined_servers) == sorted({ALICE.partition(":")[2], BOB.partition(":")[2]})
    assert not with_servers.server_joined  # only when asked for
    # Not a suffix of a server name, nor a LIKE pattern matching one.
    for asked_server, expected in [(BOB.partition(":")[2], True), ("elsewhere.test", False), ("st", False),
                                   ("t_st", False)]:
        asked = await api.query_room_info(pb.QueryRoomInfoRequest(room_id=room.room_id,
                                                                  joined_server_name=asked_server))
        assert asked.server_joined is expected, asked_server
        assert list(asked.joined_servers) == []

    missing = await api.query_room_info(pb.QueryRoomInfoRequest(room_id="!nope:test"))
    assert not missing.room_exists
    nothing = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(room_id="!nope:test"))
    assert not nothing.room_exists


async def test_queries(api: RoomserverAPI) -> None:
    room = TestRoom("12", creator=ALICE)
    before_bob = room.message(ALICE, "before bob")
    bob_join = room.join(BOB)
    first = room.message(BOB, "one")
    second = room.message(BOB, "two")
    name = room.set_state(NAME, {"name": "Named"}, sender=ALICE)
    third = room.message(ALICE, "three")
    carol_invite = room.invite(ALICE, CAROL)
    assert set(outcomes(await send(api, room.events))) == {pb.INPUT_OUTCOME_ACCEPTED}

    # Events by ID: in the order asked, unknown ones left out.
    found = await api.query_events_by_id(pb.QueryEventsByIDRequest(
        event_ids=[third.event_id, "$unknown", first.event_id]))
    assert proto_ids(found.events) == [third.event_id, first.event_id]
    assert Event.from_json(found.events[0].pdu_json, room.version).content["body"] == "three"

    # State after given events.
    at_first = await api.query_state_after_events(pb.QueryStateAfterEventsRequest(
        room_id=room.room_id, prev_event_ids=[first.event_id]))
    assert at_first.room_exists and at_first.prev_events_exist and at_first.room_version == "12"
    assert bob_join.event_id in proto_ids(at_first.state_events)
    assert name.event_id not in proto_ids(at_first.state_events)
    at_third = await api.query_state_after_events(pb.QueryStateAfterEventsRequest(
        room_id=room.room_id, prev_event_ids=[third.event_id],
        state_to_fetch=[events_pb2.StateKeyTuple(event_type=NAME, state_key="")]))
    assert proto_ids(at_third.state_events) == [name.event_id]
    unknown = await api.query_state_after_events(pb.QueryStateAfterEventsRequest(
        room_id=room.room_id, prev_event_ids=["$unknown"]))
    assert unknown.room_exists and not unknown.prev_events_exist

    # Memberships.
    bob = await api.query_membership_for_user(pb.QueryMembershipForUserRequest(room_id=room.room_id, user_id=BOB))
    assert bob.room_exists and bob.has_been_in_room and bob.is_in_room
    assert bob.membership == "join" and bob.event_id == bob_join.event_id
    carol = await api.query_membership_for_user(pb.QueryMembershipForUserRequest(
        room_id=room.room_id, user_id=CAROL))
    assert carol.membership == "invite" and not carol.is_in_room
    stranger = await api.query_membership_for_user(pb.QueryMembershipForUserRequest(
        room_id=room.room_id, user_id="@x:test"))
    assert stranger.room_exists and not stranger.has_been_in_room and stranger.membership == ""
    assert not stranger.server_joined  # only when asked for
    for asked_user, asked_server, expected in [("@x:test", "test", True), (CAROL, "test", True),
                                               (BOB, "elsewhere", False)]:
        asked = await api.query_membership_for_user(pb.QueryMembershipForUserRequest(
            room_id=room.room_id, user_id=asked_user, joined_server_name=asked_server))
        assert asked.server_joined is expected, (asked_user, asked_server)

    everyone = await api.query_memberships_for_room(pb.QueryMembershipsForRoomRequest(room_id=room.room_id))
    assert sorted(proto_ids(everyone.member_events)) == sorted(
        [room.creator_join.event_id, bob_join.event_id, carol_invite.event_id])
    joined = await api.query_memberships_for_room(pb.QueryMembershipsForRoomRequest(
        room_id=room.room_id, joined_only=True))
    assert sorted(proto_ids(joined.member_events)) == sorted([room.creator_join.event_id, bob_join.event_id])
    earlier = await api.query_memberships_for_room(pb.QueryMembershipsForRoomRequest(
        room_id=room.room_id, at_event_id=bob_join.event_id))
    assert proto_ids(earlier.member_events) == [room.creator_join.event_id]

    rooms = await api.query_rooms_for_user(pb.QueryRoomsForUserRequest(user_id=BOB))
    assert list(rooms.room_ids) == [room.room_id]
    assert list((await api.query_rooms_for_user(pb.QueryRoomsForUserRequest(
        user_id=CAROL, membership="join"))).room_ids) == []
    assert list((await api.query_rooms_for_user(pb.QueryRoomsForUserRequest(
        user_id=CAROL, membership="invite"))).room_ids) == [room.room_id]

    # Auth chain: the auth events, recursively, without the event itself.
    chain = await api.query_auth_chain(pb.QueryAuthChainRequest(event_ids=[first.event_id]))
    assert sorted(proto_ids(chain.auth_chain)) == sorted(
        [room.create.event_id, room.creator_join.event_id, room.power_levels.event_id,
         room.join_rules.event_id, bob_join.event_id])

    # Missing events: back from `latest`, not past `earliest`, oldest first.
    missing = await api.query_missing_events(pb.QueryMissingEventsRequest(
        room_id=room.room_id, earliest_events=[first.event_id], latest_events=[third.event_id], limit=10,
        server_name="remote.example"))
    assert proto_ids(missing.events) == [second.event_id, name.event_id]
    limited = await api.query_missing_events(pb.QueryMissingEventsRequest(
        room_id=room.room_id, earliest_events=[room.create.event_id], latest_events=[third.event_id], limit=2))
    assert proto_ids(limited.events) == [second.event_id, name.event_id]

    # History visibility "shared" (the default).
    seen = await api.query_user_allowed_to_see_event(pb.QueryUserAllowedToSeeEventRequest(
        event_id=before_bob.event_id, user_id=BOB))
    assert seen.event_exists and seen.allowed
    not_member = await api.query_user_allowed_to_see_event(pb.QueryUserAllowedToSeeEventRequest(
        event_id=first.event_id, user_id="@x:test"))
    assert not_member.event_exists and not not_member.allowed
    server = await api.query_server_allowed_to_see_event(pb.QueryServerAllowedToSeeEventRequest(
        event_id=first.event_id, server_name="remote.example"))
    assert server.event_exists and server.allowed
    nothing = await api.query_server_allowed_to_see_event(pb.QueryServerAllowedToSeeEventRequest(
        event_id="$unknown", server_name="remote.example"))
    assert not nothing.event_exists


async def test_history_visibility_joined(api: RoomserverAPI, running: Running) -> None:
    room = TestRoom("10", creator=ALICE, history_visibility="joined")
    secret = room.message(ALICE, "before bob and dave")
    bob_join = room.join(BOB)
    after = room.message(ALICE, "after bob")
    invite = room.invite(ALICE, REMOTE)
    assert set(outcomes(await send(api, room.events))) == {pb.INPUT_OUTCOME_ACCEPTED}

    async def user_sees(event: Event, user_id: str) -> bool:
        return (await api.query_user_allowed_to_see_event(pb.QueryUserAllowedToSeeEventRequest(
            event_id=event.event_id, user_id=user_id))).allowed

    async def server_sees(event: Event, server_name: str) -> bool:
        return (await api.query_server_allowed_to_see_event(pb.QueryServerAllowedToSeeEventRequest(
            event_id=event.event_id, server_name=server_name))).allowed

    assert await user_sees(secret, ALICE)
    assert not await user_sees(secret, BOB)
    assert await user_sees(bob_join, BOB)  # one's own membership event
    assert await user_sees(after, BOB)
    assert not await user_sees(after, REMOTE)
    assert await server_sees(after, "test")
    assert not await server_sees(after, "remote.example")  # only invited, history is "joined"
    assert await server_sees(invite, "test")

    # /get_missing_events leaves out what the asking server may not see.
    missing = await api.query_missing_events(pb.QueryMissingEventsRequest(
        room_id=room.room_id, latest_events=[invite.event_id], limit=20, server_name="other.example"))
    assert proto_ids(missing.events) == ids([room.create, room.creator_join, room.power_levels,
                                             room.join_rules])
    missing = await api.query_missing_events(pb.QueryMissingEventsRequest(
        room_id=room.room_id, latest_events=[invite.event_id], limit=20, server_name="test"))
    assert len(missing.events) == len(room.events) - 1

    # Readers get the visibility in force at each event; for the visibility
    # event itself, the more permissive of the old and new values.
    visibility = {n.event.event_id: n.history_visibility for n in new_room_events(await read_output(running.log))}
    hv_event = room.state[("m.room.history_visibility", "")]
    assert visibility[room.join_rules.event_id] == "shared"
    assert visibility[hv_event.event_id] == "shared"
    assert visibility[secret.event_id] == visibility[after.event_id] == "joined"


async def test_rejected_events(api: RoomserverAPI, running: Running) -> None:
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    assert set(outcomes(await send(api, room.events))) == {pb.INPUT_OUTCOME_ACCEPTED}
    before = len(await read_output(running.log))

    # Carol never joined: her message fails against its own auth events.
    intruder = room.message(CAROL, "let me in", advance=False)
    # Bob (level 0) may not change the power levels (state_default 50).
    takeover = room.set_state("m.room.power_levels", {"users": {BOB: 100}}, sender=BOB, advance=False)
    results = await send(api, [intruder, takeover])
    assert outcomes(results) == [pb.INPUT_OUTCOME_REJECTED, pb.INPUT_OUTCOME_REJECTED]
    assert all(r.reason for r in results)

    # Stored as rejected: only visible when asking for unaccepted events.
    found = await api.query_events_by_id(pb.QueryEventsByIDRequest(event_ids=ids([intruder, takeover])))
    assert list(found.events) == []
    found = await api.query_events_by_id(pb.QueryEventsByIDRequest(
        event_ids=ids([intruder, takeover]), include_unaccepted=True))
    assert proto_ids(found.events) == ids([intruder, takeover])

    # Nothing was written for readers, the room did not move, and input again is a duplicate.
    assert len(await read_output(running.log)) == before
    latest = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert list(latest.latest_event_ids) == room.latest
    again = await send(api, [intruder])
    assert outcomes(again) == [pb.INPUT_OUTCOME_DUPLICATE]
    assert again[0].reason.startswith("already processed: rejected")

    # An event whose auth events lie about the state before it is rejected
    # there even though its auth events allow it: Bob was banned, his message
    # cites his old join.
    bob_join = room.state[(MEMBER, BOB)]
    ban = room.ban(ALICE, BOB)
    assert outcomes(await send(api, [ban])) == [pb.INPUT_OUTCOME_ACCEPTED]
    liar = room.message(BOB, "still here", advance=False,
                        auth_event_ids=[room.power_levels.event_id, bob_join.event_id])
    assert outcomes(await send(api, [liar])) == [pb.INPUT_OUTCOME_REJECTED]


async def test_soft_failed_event(api: RoomserverAPI, running: Running) -> None:
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    before_ban = room.message(ALICE, "hello")
    ban = room.ban(ALICE, BOB)
    assert set(outcomes(await send(api, room.events))) == {pb.INPUT_OUTCOME_ACCEPTED}
    outputs_before = len(await read_output(running.log))

    # Bob, on a fork from before his ban: allowed by the state before it,
    # not by the current state.
    sneaky = room.message(BOB, "you cannot see me", prev_event_ids=[before_ban.event_id], advance=False)
    results = await send(api, [sneaky])
    assert outcomes(results) == [pb.INPUT_OUTCOME_SOFT_FAILED]

    latest = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert list(latest.latest_event_ids) == [ban.event_id]
    assert len(await read_output(running.log)) == outputs_before
    found = await api.query_events_by_id(pb.QueryEventsByIDRequest(event_ids=[sneaky.event_id]))
    assert list(found.events) == []
    found = await api.query_events_by_id(pb.QueryEventsByIDRequest(
        event_ids=[sneaky.event_id], include_unaccepted=True))
    assert proto_ids(found.events) == [sneaky.event_id]


async def test_duplicate_input_writes_nothing_twice(api: RoomserverAPI, running: Running) -> None:
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    room.message(BOB, "once")
    assert set(outcomes(await send(api, room.events))) == {pb.INPUT_OUTCOME_ACCEPTED}
    outputs = await read_output(running.log)
    again = await send(api, room.events)
    assert outcomes(again) == [pb.INPUT_OUTCOME_DUPLICATE] * len(room.events)
    assert len(await read_output(running.log)) == len(outputs)
    async with running.component.storage.reading() as txn:
        count = await txn.conn.scalar(select(func.count()).select_from(events_table))
    assert count == len(room.events)


async def test_output_annotations(api: RoomserverAPI, running: Running) -> None:
    room = TestRoom("12", creator=ALICE)
    first_name = room.set_state(NAME, {"name": "One"}, sender=ALICE)
    second_name = room.set_state(NAME, {"name": "Two"}, sender=ALICE)
    invite = room.invite(ALICE, BOB)
    join = room.join(BOB)
    message = room.message(BOB, "to be redacted")
    redaction = room.redact(ALICE, message.event_id)
    await send(api, room.events)
    txn_event = room.message(BOB, "from a client")
    await api.input_room_events(pb.InputRoomEventsRequest(events=[input_event(
        txn_event, transaction_id=(BOB, "DEVICE", "txn1"))], wait=True))
    all_events = [*room.events]

    outputs = await read_output(running.log)
    timeline = new_room_events(outputs)
    assert [n.event.event_id for n in timeline] == ids(all_events)
    # Each entry names the one before it and counts up.
    assert timeline[0].last_sent_event_id == ""
    for previous, current in itertools.pairwise(timeline):
        assert current.last_sent_event_id == previous.event.event_id
        assert current.room_stream_position == previous.room_stream_position + 1
        assert list(current.latest_event_ids) == [current.event.event_id]
    by_id = {n.event.event_id: n for n in timeline}
    assert list(by_id[first_name.event_id].adds_state_event_ids) == [first_name.event_id]
    assert list(by_id[first_name.event_id].removes_state_event_ids) == []
    assert list(by_id[second_name.event_id].adds_state_event_ids) == [second_name.event_id]
    assert list(by_id[second_name.event_id].removes_state_event_ids) == [first_name.event_id]
    assert list(by_id[join.event_id].removes_state_event_ids) == [invite.event_id]
    assert list(by_id[message.event_id].adds_state_event_ids) == []
    assert by_id[message.event_id].history_visibility == "shared"
    assert not by_id[message.event_id].HasField("transaction_id")
    assert by_id[txn_event.event_id].transaction_id.transaction_id == "txn1"
    assert by_id[txn_event.event_id].transaction_id.device_id == "DEVICE"

    invites = [o.new_invite_event for o in outputs if o.WhichOneof("payload") == "new_invite_event"]
    assert [i.event.event_id for i in invites] == [invite.event_id]
    assert invites[0].target_user_id == BOB
    stripped = [json.loads(s) for s in invites[0].invite_room_state_json]
    assert {(s["type"], s["state_key"]) for s in stripped} == {
        ("m.room.create", ""), ("m.room.join_rules", ""), ("m.room.name", ""), (MEMBER, ALICE)}
    assert all(set(s) == {"type", "state_key", "content", "sender"} for s in stripped)

    retired = [o.retire_invite_event for o in outputs if o.WhichOneof("payload") == "retire_invite_event"]
    assert len(retired) == 1
    assert retired[0].event_id == invite.event_id and retired[0].retired_by_event_id == join.event_id
    assert retired[0].membership == "join" and retired[0].target_user_id == BOB

    redacted = [o.redacted_event for o in outputs if o.WhichOneof("payload") == "redacted_event"]
    assert len(redacted) == 1
    assert redacted[0].redacted_event_id == message.event_id
    assert redacted[0].redaction_event_id == redaction.event_id
    assert json.loads(redacted[0].redacted_event.pdu_json)["content"] == {}
    # Queries answer with the redacted form from now on.
    found = await api.query_events_by_id(pb.QueryEventsByIDRequest(event_ids=[message.event_id]))
    assert json.loads(found.events[0].pdu_json)["content"] == {}


@pytest.mark.parametrize("version", ["10", "12"])
async def test_fork_is_resolved(api: RoomserverAPI, running: Running, version: str) -> None:
    room = TestRoom(version, creator=ALICE)
    room.join(BOB)
    base = room.message(ALICE, "fork point")
    await send(api, room.events)

    left = room.set_state(NAME, {"name": "Left"}, sender=ALICE, prev_event_ids=[base.event_id], advance=False)
    right = room.set_state(NAME, {"name": "Right"}, sender=ALICE, prev_event_ids=[base.event_id],
                           advance=False)
    assert outcomes(await send(api, [left, right])) == [pb.INPUT_OUTCOME_ACCEPTED] * 2

    latest = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(
        room_id=room.room_id, state_to_fetch=[events_pb2.StateKeyTuple(event_type=NAME, state_key="")]))
    assert sorted(latest.latest_event_ids) == sorted([left.event_id, right.event_id])
    # Same power, so the later origin_server_ts wins (state resolution v2).
    assert proto_ids(latest.state_events) == [right.event_id]
    assert latest.depth == left.depth + 1
    both = await api.query_state_after_events(pb.QueryStateAfterEventsRequest(
        room_id=room.room_id, prev_event_ids=[left.event_id, right.event_id],
        state_to_fetch=[events_pb2.StateKeyTuple(event_type=NAME, state_key="")]))
    assert proto_ids(both.state_events) == [right.event_id]

    timeline = {n.event.event_id: n for n in new_room_events(await read_output(running.log))}
    assert list(timeline[right.event_id].adds_state_event_ids) == [right.event_id]
    assert list(timeline[right.event_id].removes_state_event_ids) == [left.event_id]
    assert sorted(timeline[right.event_id].latest_event_ids) == sorted([left.event_id, right.event_id])

    merge = room.message(BOB, "merged", prev_event_ids=[left.event_id, right.event_id],
                         auth_state={**room.state, (NAME, ""): right})
    assert outcomes(await send(api, [merge])) == [pb.INPUT_OUTCOME_ACCEPTED]
    latest = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert list(latest.latest_event_ids) == [merge.event_id]
    assert right.event_id in proto_ids(latest.state_events)


async def test_bad_input_is_recorded_and_skipped(api: RoomserverAPI, running: Running) -> None:
    room = TestRoom("12", creator=ALICE)
    assert set(outcomes(await send(api, room.events))) == {pb.INPUT_OUTCOME_ACCEPTED}
    log: Log = running.log
    key = room.room_id.encode()
    # Not a protobuf at all.
    await log.append(ROOMSERVER_INPUT.name, key, b"\xff\xfe garbage")
    # A room version nobody knows.
    bad_version = input_log_pb2.InputRoomEventsEntry(request_id="r1", room_id=room.room_id, events=[
        input_log_pb2.InputRoomEvent(kind=NEW, event=events_pb2.Event(
            event_id="$x", room_version="999", pdu_json=b"{}"))])
    await log.append(ROOMSERVER_INPUT.name, key, bad_version.SerializeToString())
    # Not JSON.
    bad_json = input_log_pb2.InputRoomEventsEntry(request_id="r2", room_id=room.room_id, events=[
        input_log_pb2.InputRoomEvent(kind=NEW, event=events_pb2.Event(room_version="12", pdu_json=b"{nope"))])
    await log.append(ROOMSERVER_INPUT.name, key, bad_json.SerializeToString())
    # An event of a room nobody created.
    other = TestRoom("12", creator=ALICE)
    orphan = other.message(ALICE, "orphan")
    orphan_entry = input_log_pb2.InputRoomEventsEntry(request_id="r3", room_id=other.room_id,
                                                      events=[input_event(orphan)])
    await log.append(ROOMSERVER_INPUT.name, other.room_id.encode(), orphan_entry.SerializeToString())

    # The room keeps working.
    after = room.message(ALICE, "still working")
    assert outcomes(await send(api, [after])) == [pb.INPUT_OUTCOME_ACCEPTED]
    # The orphan is another room's input, consumed in parallel: wait for it.
    by_request: dict[str, str] = {}
    for _ in range(100):
        async with running.component.storage.reading() as txn:
            rows = (await txn.conn.execute(select(input_failures.c.request_id, input_failures.c.reason)
                                           .order_by(input_failures.c.failure_nid))).all()
        by_request = {r.request_id: r.reason for r in rows}
        if "r3" in by_request:
            break
        await asyncio.sleep(0.05)
    assert "" in by_request and "not an InputRoomEventsEntry" in by_request[""]
    assert "unknown room version" in by_request["r1"]
    assert "malformed" in by_request["r2"]
    assert "unknown room" in by_request["r3"]


async def test_invalid_input_answers_at_once(api: RoomserverAPI) -> None:
    room = TestRoom("12", creator=ALICE)
    await send(api, room.events)
    # Prev events the room server has never seen.
    gap = room.message(ALICE, "after a gap", prev_event_ids=["$never-seen"], advance=False)
    results = await send(api, [gap])
    assert outcomes(results) == [pb.INPUT_OUTCOME_INVALID]
    assert "prev events" in results[0].reason
    # Unparseable input never reaches the log.
    response = await api.input_room_events(pb.InputRoomEventsRequest(wait=True, events=[
        input_log_pb2.InputRoomEvent(kind=NEW, event=events_pb2.Event(room_version="12", pdu_json=b"[]"))]))
    assert outcomes(response.results) == [pb.INPUT_OUTCOME_INVALID]


async def test_outliers_state_and_backfill(api: RoomserverAPI, running: Running) -> None:
    """A join over federation: the auth chain and state arrive as outliers,
    the join with the state before it, then older history as backfill."""
    room = TestRoom("12", creator=ALICE)
    state_before = list(room.events)
    old_message = room.message(ALICE, "from before we joined")
    remote_join = room.join(REMOTE)

    assert outcomes(await send(api, state_before, OUTLIER)) == [pb.INPUT_OUTCOME_ACCEPTED] * len(state_before)
    info = await api.query_room_info(pb.QueryRoomInfoRequest(room_id=room.room_id))
    assert info.room_exists and info.is_stub
    assert new_room_events(await read_output(running.log)) == []

    response = await api.input_room_events(pb.InputRoomEventsRequest(wait=True, events=[input_event(
        remote_join, state_event_ids=ids(state_before), origin="remote.example")]))
    assert outcomes(response.results) == [pb.INPUT_OUTCOME_ACCEPTED]
    info = await api.query_room_info(pb.QueryRoomInfoRequest(room_id=room.room_id))
    assert not info.is_stub and info.joined_member_count == 2
    [join_output] = new_room_events(await read_output(running.log))
    assert join_output.event.event_id == remote_join.event_id
    assert join_output.origin == "remote.example"
    assert sorted(join_output.adds_state_event_ids) == sorted(ids([*state_before, remote_join]))
    assert sorted(proto_ids(join_output.adds_state_events)) == sorted(ids(state_before))

    assert outcomes(await send(api, [old_message], OLD)) == [pb.INPUT_OUTCOME_ACCEPTED]
    timeline = new_room_events(await read_output(running.log))
    assert [n.event.event_id for n in timeline] == ids([remote_join, old_message])
    assert timeline[1].historical and list(timeline[1].adds_state_event_ids) == []
    assert timeline[1].last_sent_event_id == remote_join.event_id
    latest = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert list(latest.latest_event_ids) == [remote_join.event_id]


async def test_crash_between_commit_and_output(tmp_path: Path, log: Log) -> None:
    """Replaying the input log after a crash duplicates nothing in storage
    and sends every unsent output entry exactly once."""
    config = make_config(tmp_path)
    first = await start_roomserver(config, log)
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    try:
        api = first.component.api
        await send(api, room.events)

        # The process dies after the database commit, before the append.
        processor = first.component.processor
        real_send = processor._send

        async def crash(unsent: Sequence[object]) -> None:
            return None

        processor._send = crash  # type: ignore[method-assign]
        lost = room.message(BOB, "committed, never sent")
        also_lost = room.message(BOB, "this one too")
        assert outcomes(await send(api, [lost, also_lost])) == [pb.INPUT_OUTCOME_ACCEPTED] * 2
        processor._send = real_send  # type: ignore[method-assign]
        timeline = new_room_events(await read_output(log))
        assert lost.event_id not in [n.event.event_id for n in timeline]

        # Input of an event that is stored but unsent sends it then.
        again = await send(api, [lost])
        assert outcomes(again) == [pb.INPUT_OUTCOME_DUPLICATE]
        assert [n.event.event_id for n in new_room_events(await read_output(log))][-1] == lost.event_id
    finally:
        await first.stop()

    # A new process replays the whole input log (as if no offset had been committed).
    second_config = make_config(tmp_path)
    component = await open_roomserver(second_config, log, TEST_SIGNING_KEY)
    component.input_group = "roomserver-replay"
    task = asyncio.create_task(component.run())
    try:
        await asyncio.wait_for(component.ready.wait(), 10)
        final = room.message(ALICE, "after the restart")
        assert outcomes(await send(component.api, [final])) == [pb.INPUT_OUTCOME_ACCEPTED]
        timeline = new_room_events(await read_output(log))
        sent_ids = [n.event.event_id for n in timeline]
        assert sorted(sent_ids) == sorted(ids(room.events))
        assert len(sent_ids) == len(set(sent_ids))
        assert [n.room_stream_position for n in timeline] == list(range(1, len(room.events) + 1))
        async with component.storage.reading() as txn:
            count = await txn.conn.scalar(select(func.count()).select_from(events_table))
        assert count == len(room.events)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await component.close()


@pytest.mark.postgres
async def test_on_postgresql(tmp_path: Path, log: Log, fresh_postgres_database: str) -> None:
    running = await start_roomserver(make_config(tmp_path, fresh_postgres_database), log)
    try:
        api = running.component.api
        room = TestRoom("12", creator=ALICE)
        room.join(BOB)
        base = room.message(BOB, "hello")
        assert set(outcomes(await send(api, room.events))) == {pb.INPUT_OUTCOME_ACCEPTED}
        left = room.set_state(NAME, {"name": "L"}, prev_event_ids=[base.event_id], advance=False)
        right = room.set_state(NAME, {"name": "R"}, prev_event_ids=[base.event_id], advance=False)
        intruder = room.message(CAROL, "no", advance=False)
        assert outcomes(await send(api, [left, right, intruder])) == [
            pb.INPUT_OUTCOME_ACCEPTED, pb.INPUT_OUTCOME_ACCEPTED, pb.INPUT_OUTCOME_REJECTED]
        assert outcomes(await send(api, [left])) == [pb.INPUT_OUTCOME_DUPLICATE]
        latest = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(
            room_id=room.room_id, state_to_fetch=[events_pb2.StateKeyTuple(event_type=NAME, state_key="")]))
        assert proto_ids(latest.state_events) == [right.event_id]
        chain = await api.query_auth_chain(pb.QueryAuthChainRequest(event_ids=[base.event_id]))
        assert room.create.event_id in proto_ids(chain.auth_chain)
        members = await api.query_memberships_for_room(pb.QueryMembershipsForRoomRequest(
            room_id=room.room_id, joined_only=True))
        assert len(members.member_events) == 2
        for asked_server, expected in [("test", True), ("t_st", False)]:  # the statement behind a local join's check
            asked = await api.query_membership_for_user(pb.QueryMembershipForUserRequest(
                room_id=room.room_id, user_id=CAROL, joined_server_name=asked_server))
            assert asked.server_joined is expected, asked_server
        assert len(new_room_events(await read_output(log))) == len(room.events) + 2
        await api.set_room_alias(pb.SetRoomAliasRequest(alias="#pg:test", room_id=room.room_id, creator=ALICE))
        with pytest.raises(errors.MatrixError) as taken:
            await api.set_room_alias(pb.SetRoomAliasRequest(alias="#pg:test", room_id=room.room_id))
        assert taken.value.status == 409
        shared = await api.query_user_allowed_to_see_event(pb.QueryUserAllowedToSeeEventRequest(
            event_id=base.event_id, user_id=BOB))
        assert shared.allowed
    finally:
        await running.stop()


@pytest.mark.parametrize("version", ["1", "2", "10", "12"])
async def test_state_resolution_applies_power_first(api: RoomserverAPI, running: Running, version: str) -> None:
    """Two branches: Bob (power 50) renames the room, Alice demotes him. The
    resolved state applies the demotion first, so Bob's rename is dropped
    (from state resolution v2 on)."""
    room = TestRoom(version, creator=ALICE, extra_power_users={BOB: 50})
    room.join(BOB)
    base = room.message(ALICE, "fork point")
    await send(api, room.events)
    original_levels = room.state[("m.room.power_levels", "")]
    levels = dict(original_levels.content)
    levels["users"] = {k: v for k, v in levels["users"].items() if k != BOB}
    rename = room.set_state(NAME, {"name": "Bob's room"}, sender=BOB, prev_event_ids=[base.event_id],
                            advance=False)
    demote = room.set_state("m.room.power_levels", levels, sender=ALICE, prev_event_ids=[base.event_id],
                            advance=False)
    assert outcomes(await send(api, [rename, demote])) == [pb.INPUT_OUTCOME_ACCEPTED] * 2

    latest = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert sorted(latest.latest_event_ids) == sorted([rename.event_id, demote.event_id])
    state_ids = proto_ids(latest.state_events)
    assert demote.event_id in state_ids and original_levels.event_id not in state_ids
    if version == "1":
        # State resolution v1 only resolves keys the branches disagree on;
        # the name is set on one branch only, so it stays (v1's known flaw,
        # which v2 fixed).
        assert rename.event_id in state_ids
        return
    assert rename.event_id not in state_ids

    timeline = {n.event.event_id: n for n in new_room_events(await read_output(running.log))}
    assert list(timeline[rename.event_id].adds_state_event_ids) == [rename.event_id]
    assert list(timeline[demote.event_id].adds_state_event_ids) == [demote.event_id]
    assert sorted(timeline[demote.event_id].removes_state_event_ids) == sorted(
        [original_levels.event_id, rename.event_id])


async def test_outlier_later_backfilled(api: RoomserverAPI, running: Running) -> None:
    room = TestRoom("12", creator=ALICE)
    state_before = list(room.events)
    remote_join = room.join(REMOTE)
    assert set(outcomes(await send(api, state_before, OUTLIER))) == {pb.INPUT_OUTCOME_ACCEPTED}
    response = await api.input_room_events(pb.InputRoomEventsRequest(wait=True, events=[input_event(
        remote_join, state_event_ids=ids(state_before))]))
    assert outcomes(response.results) == [pb.INPUT_OUTCOME_ACCEPTED]
    hidden = await api.query_events_by_id(pb.QueryEventsByIDRequest(event_ids=[room.power_levels.event_id]))
    assert list(hidden.events) == []  # an outlier is not part of the timeline

    # The same event, backfilled: no longer a duplicate, now in the timeline.
    assert outcomes(await send(api, [room.power_levels], OLD)) == [pb.INPUT_OUTCOME_ACCEPTED]
    found = await api.query_events_by_id(pb.QueryEventsByIDRequest(event_ids=[room.power_levels.event_id]))
    assert proto_ids(found.events) == [room.power_levels.event_id]
    timeline = new_room_events(await read_output(running.log))
    assert [n.event.event_id for n in timeline] == ids([remote_join, room.power_levels])
    assert timeline[-1].historical
    assert outcomes(await send(api, [room.power_levels], OLD)) == [pb.INPUT_OUTCOME_DUPLICATE]


async def test_failure_inside_an_entry_rolls_back_only_that_event(running: Running) -> None:
    component = running.component
    api = component.api
    room = TestRoom("12", creator=ALICE)
    await send(api, room.events)
    fine = room.message(ALICE, "fine")
    doomed = room.set_state(NAME, {"name": "doomed"}, sender=ALICE)
    processor = component.processor
    real_advance = processor._advance_room

    async def explode(*args: object, **kwargs: object) -> list[output_log_pb2.OutputEvent]:
        event = args[2]
        assert isinstance(event, Event)
        if event.event_id == doomed.event_id:
            raise RuntimeError("disk on fire")
        return await real_advance(*args, **kwargs)  # type: ignore[arg-type]

    processor._advance_room = explode  # type: ignore[method-assign]
    results = await send(api, [fine, doomed])
    processor._advance_room = real_advance  # type: ignore[method-assign]
    assert outcomes(results) == [pb.INPUT_OUTCOME_ACCEPTED, pb.INPUT_OUTCOME_INVALID]
    assert "disk on fire" in results[1].reason

    # Nothing of the failed event was kept: it can be input again, and the
    # name type and state it interned inside the rolled-back savepoint do not
    # confuse what comes after.
    assert outcomes(await send(api, [doomed])) == [pb.INPUT_OUTCOME_ACCEPTED]
    after = room.message(ALICE, "after")
    assert outcomes(await send(api, [after])) == [pb.INPUT_OUTCOME_ACCEPTED]
    latest = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(
        room_id=room.room_id, state_to_fetch=[events_pb2.StateKeyTuple(event_type=NAME, state_key="")]))
    assert proto_ids(latest.state_events) == [doomed.event_id]
    assert list(latest.latest_event_ids) == [after.event_id]
    timeline = [n.event.event_id for n in new_room_events(await read_output(running.log))]
    assert timeline == ids(room.events)


async def test_input_through_an_instance_that_does_not_consume(tmp_path: Path, running: Running) -> None:
    """Another room server instance (sharing the database and the log) whose
    input call waits for an entry the running instance consumes."""
    other = await open_roomserver(make_config(tmp_path), running.log, TEST_SIGNING_KEY)
    try:
        room = TestRoom("12", creator=ALICE)
        room.join(BOB)
        results = await send(other.api, room.events)
        assert outcomes(results) == [pb.INPUT_OUTCOME_ACCEPTED] * len(room.events)
        bad = room.message(CAROL, "not a member", advance=False)
        assert outcomes(await send(other.api, [bad])) == [pb.INPUT_OUTCOME_REJECTED]
    finally:
        await other.close()


async def test_errors_cross_both_bindings(api: RoomserverAPI) -> None:
    room = TestRoom("12", creator=ALICE)
    await send(api, room.events)
    with pytest.raises(errors.NotFound):
        await api.query_memberships_for_room(pb.QueryMembershipsForRoomRequest(
            room_id=room.room_id, at_event_id="$unknown"))
    with pytest.raises(errors.NotFound):
        await api.query_missing_events(pb.QueryMissingEventsRequest(
            room_id="!unknown:test", latest_events=["$x"], limit=5))


async def test_input_times_out_without_a_consumer(tmp_path: Path, log: Log) -> None:
    config = make_config(tmp_path)
    config.input_timeout_seconds = 0.3
    idle = await open_roomserver(config, log, TEST_SIGNING_KEY)  # never runs its consumer
    try:
        room = TestRoom("12", creator=ALICE)
        with pytest.raises(errors.Unavailable):
            await idle.api.input_room_events(room.input_request(room.events))
        # Without waiting, the events are on the log and the call returns at once.
        response = await idle.api.input_room_events(room.input_request(room.events, wait=False))
        assert [r.event_id for r in response.results] == ids(room.events)
        assert outcomes(response.results) == [pb.INPUT_OUTCOME_UNSPECIFIED] * len(room.events)
    finally:
        await idle.close()


async def test_redaction_before_its_target(api: RoomserverAPI, running: Running) -> None:
    room = TestRoom("10", creator=ALICE)
    room.join(BOB)
    base = room.message(BOB, "base")
    await send(api, room.events)
    secret = room.message(BOB, "oops, a password", advance=False)
    redaction = room.redact(ALICE, secret.event_id, prev_event_ids=[base.event_id])
    assert outcomes(await send(api, [redaction])) == [pb.INPUT_OUTCOME_ACCEPTED]
    assert outcomes(await send(api, [secret])) == [pb.INPUT_OUTCOME_ACCEPTED]

    outputs = await read_output(running.log)
    [secret_output] = [n for n in new_room_events(outputs) if n.event.event_id == secret.event_id]
    assert json.loads(secret_output.event.pdu_json)["content"] == {}
    redacted = [o.redacted_event for o in outputs if o.WhichOneof("payload") == "redacted_event"]
    assert [(r.redacted_event_id, r.redaction_event_id) for r in redacted] == [
        (secret.event_id, redaction.event_id)]
    found = await api.query_events_by_id(pb.QueryEventsByIDRequest(event_ids=[secret.event_id]))
    assert json.loads(found.events[0].pdu_json)["content"] == {}


async def test_invite_over_federation_then_join(api: RoomserverAPI, running: Running) -> None:
    """A remote server invites our user to a room we are not in: the invite
    is stored in a stub room and handed to readers; our user's later join
    (with the state the remote server sent) retires it."""
    room = TestRoom("12", creator=REMOTE, server_name="remote.example")
    stripped = [{"type": e.type, "state_key": e.state_key, "content": e.content, "sender": e.sender}
                for e in (room.create, room.join_rules)]
    invite = room.invite(REMOTE, BOB, unsigned={"invite_room_state": stripped})
    assert outcomes(await send(api, [invite], OUTLIER)) == [pb.INPUT_OUTCOME_ACCEPTED]

    info = await api.query_room_info(pb.QueryRoomInfoRequest(room_id=room.room_id))
    assert info.room_exists and info.is_stub
    membership = await api.query_membership_for_user(pb.QueryMembershipForUserRequest(
        room_id=room.room_id, user_id=BOB, joined_server_name=BOB.partition(":")[2]))
    assert membership.membership == "invite" and membership.event_id == invite.event_id
    assert not membership.server_joined  # a stub has no current state to be joined in
    assert list((await api.query_rooms_for_user(pb.QueryRoomsForUserRequest(
        user_id=BOB, membership="invite"))).room_ids) == [room.room_id]
    [invite_output] = [o.new_invite_event for o in await read_output(running.log)
                       if o.WhichOneof("payload") == "new_invite_event"]
    assert invite_output.event.event_id == invite.event_id and invite_output.target_user_id == BOB
    assert [json.loads(s) for s in invite_output.invite_room_state_json] == stripped

    state_before_join = [e for e in room.state.values() if e.event_id != invite.event_id]
    join = room.join(BOB)
    assert set(outcomes(await send(api, state_before_join, OUTLIER))) == {pb.INPUT_OUTCOME_ACCEPTED}
    response = await api.input_room_events(pb.InputRoomEventsRequest(wait=True, events=[input_event(
        join, state_event_ids=[*ids(state_before_join), invite.event_id])]))
    assert outcomes(response.results) == [pb.INPUT_OUTCOME_ACCEPTED]
    membership = await api.query_membership_for_user(pb.QueryMembershipForUserRequest(
        room_id=room.room_id, user_id=BOB))
    assert membership.membership == "join" and membership.is_in_room
    retired = [o.retire_invite_event for o in await read_output(running.log)
               if o.WhichOneof("payload") == "retire_invite_event"]
    assert [(r.event_id, r.retired_by_event_id, r.membership) for r in retired] == [
        (invite.event_id, join.event_id, "join")]


async def test_big_inputs_are_split_into_several_entries(running: Running,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from roomserver.internal.input import inputer

    monkeypatch.setattr(inputer, "MAX_ENTRY_BYTES", 3000)
    room = TestRoom("12", creator=ALICE)
    for i in range(12):
        room.message(ALICE, f"message {i} " + "x" * 300)
    results = await send(running.component.api, room.events)
    assert outcomes(results) == [pb.INPUT_OUTCOME_ACCEPTED] * len(room.events)
    consumer = await running.log.consumer("test-input-reader", [ROOMSERVER_INPUT.name])
    entries = []
    try:
        while batch := await consumer.fetch(max_records=100, timeout=0.2):
            for record in batch:
                entry = input_log_pb2.InputRoomEventsEntry()
                entry.ParseFromString(record.value)
                entries.append(entry)
    finally:
        await consumer.close()
    assert len(entries) > 3
    assert all(e.ByteSize() < 3000 + 1500 for e in entries)
    assert [ev.event.event_id for e in entries for ev in e.events] == ids(room.events)
    timeline = new_room_events(await read_output(running.log))
    assert [n.event.event_id for n in timeline] == ids(room.events)


async def test_output_append_failure_keeps_the_outcome_and_retries(running: Running) -> None:
    component = running.component
    api = component.api
    room = TestRoom("12", creator=ALICE)
    await send(api, room.events)
    unlucky = room.message(ALICE, "the log was down")
    producer = component.processor._producer
    real_send_many = producer.send_many

    async def flaky(room_id: str, payloads: Sequence[bytes]) -> None:
        if any(unlucky.event_id.encode() in payload for payload in payloads):
            raise ConnectionError("log unavailable")
        await real_send_many(room_id, payloads)

    producer.send_many = flaky  # type: ignore[method-assign]
    assert outcomes(await send(api, [unlucky])) == [pb.INPUT_OUTCOME_ACCEPTED]
    producer.send_many = real_send_many  # type: ignore[method-assign]
    assert unlucky.event_id not in [n.event.event_id for n in new_room_events(await read_output(running.log))]

    # A writer's retry finds it stored but unsent: it is sent then, once.
    assert outcomes(await send(api, [unlucky])) == [pb.INPUT_OUTCOME_DUPLICATE]
    assert outcomes(await send(api, [unlucky])) == [pb.INPUT_OUTCOME_DUPLICATE]
    timeline = [n.event.event_id for n in new_room_events(await read_output(running.log))]
    assert timeline == ids(room.events)


@pytest.mark.kafka
async def test_over_kafka(tmp_path: Path) -> None:
    """The same input and output path over the Kafka log (a broker of its
    own, so the fixed topic names start empty)."""
    from common.logs import KafkaLog
    from tests.harness.tansu import start_tansu, stop_tansu

    broker, bootstrap = start_tansu(tmp_path / "tansu.log")
    kafka = KafkaLog(bootstrap, "roomserver-test", partitions=4, session_timeout_ms=500,
                     heartbeat_interval_ms=100)
    try:
        await kafka.start()
        running = await start_roomserver(make_config(tmp_path), kafka)
        try:
            api = running.component.api
            rooms = [TestRoom("12", creator=ALICE) for _ in range(3)]
            for room in rooms:
                room.join(BOB)
                room.message(BOB, "over kafka")
            responses = await asyncio.gather(*(send(api, room.events) for room in rooms))
            assert all(set(outcomes(r)) == {pb.INPUT_OUTCOME_ACCEPTED} for r in responses)
            assert outcomes(await send(api, rooms[0].events[:1])) == [pb.INPUT_OUTCOME_DUPLICATE]
            timeline = new_room_events(await read_output(kafka, quiet_seconds=3.0))
            for room in rooms:
                mine = [n.event.event_id for n in timeline if n.event.event_id in room.by_id]
                assert mine == ids(room.events)
        finally:
            await running.stop()
    finally:
        await kafka.close()
        stop_tansu(broker)


async def test_event_with_state_replaces_its_known_prev_extremity(api: RoomserverAPI) -> None:
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    await send(api, room.events)
    state_ids = [e.event_id for e in room.state.values()]
    after = room.message(BOB, "with the state given")
    response = await api.input_room_events(pb.InputRoomEventsRequest(wait=True, events=[input_event(
        after, state_event_ids=state_ids)]))
    assert outcomes(response.results) == [pb.INPUT_OUTCOME_ACCEPTED]
    latest = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert list(latest.latest_event_ids) == [after.event_id]


@pytest.mark.parametrize("version", ["4", "12"])
async def test_many_outliers_in_any_order(running: Running, version: str) -> None:
    """A federated join's auth chain and state, many outliers in one entry
    and in no particular order, take the bulk path with the same outcomes
    as one by one."""
    api = running.component.api
    room = TestRoom(version, creator=REMOTE, server_name="remote.example")
    for i in range(30):
        room.join(f"@user{i}:remote.example")
    state = list(room.state.values())
    intruder = room.message("@nobody:remote.example", "not joined", advance=False)
    orphan = room.message(REMOTE, "auth events nobody has", advance=False,
                          auth_event_ids=["$missing"])
    batch = [*reversed(room.events), intruder, orphan, room.events[3]]

    processor = running.component.processor
    one_by_one = processor._process_event

    async def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("the outliers were not stored in bulk")

    processor._process_event = refuse  # type: ignore[method-assign,assignment]
    try:
        results = await send(api, batch, OUTLIER)
    finally:
        processor._process_event = one_by_one  # type: ignore[method-assign]
    assert outcomes(results) == [pb.INPUT_OUTCOME_ACCEPTED] * len(room.events) + [
        pb.INPUT_OUTCOME_REJECTED, pb.INPUT_OUTCOME_INVALID, pb.INPUT_OUTCOME_ACCEPTED]
    assert "unknown auth events" in results[-2].reason

    info = await api.query_room_info(pb.QueryRoomInfoRequest(room_id=room.room_id))
    assert info.is_stub and info.create_event_id == room.create.event_id
    chain = await api.query_auth_chain(pb.QueryAuthChainRequest(event_ids=[room.events[-1].event_id]))
    assert room.create.event_id in proto_ids(chain.auth_chain)
    assert outcomes(await send(api, room.events[:10], OUTLIER)) == [pb.INPUT_OUTCOME_DUPLICATE] * 10

    join = room.join(BOB)
    response = await api.input_room_events(pb.InputRoomEventsRequest(wait=True, events=[input_event(
        join, state_event_ids=ids(state))]))
    assert outcomes(response.results) == [pb.INPUT_OUTCOME_ACCEPTED]
    info = await api.query_room_info(pb.QueryRoomInfoRequest(room_id=room.room_id))
    assert not info.is_stub and info.joined_member_count == 32


async def test_shared_history_stays_visible_after_leaving(api: RoomserverAPI) -> None:
    room = TestRoom("12", creator=ALICE)
    early = room.message(ALICE, "before anyone else")
    room.join(BOB)
    room.leave(BOB)
    room.invite(ALICE, CAROL)
    await send(api, room.events)

    async def sees(user_id: str) -> bool:
        return (await api.query_user_allowed_to_see_event(pb.QueryUserAllowedToSeeEventRequest(
            event_id=early.event_id, user_id=user_id))).allowed

    assert await sees(BOB)  # joined after the event, left since: still allowed
    assert not await sees(CAROL)  # only invited


async def test_room_aliases(api: RoomserverAPI) -> None:
    room = TestRoom("12", creator=ALICE)
    await send(api, room.events)
    await api.set_room_alias(pb.SetRoomAliasRequest(alias="#hall:test", room_id=room.room_id, creator=ALICE))
    await api.set_room_alias(pb.SetRoomAliasRequest(alias="#lobby:test", room_id=room.room_id, creator=BOB))
    with pytest.raises(errors.MatrixError) as taken:
        await api.set_room_alias(pb.SetRoomAliasRequest(alias="#hall:test", room_id=room.room_id, creator=BOB))
    assert taken.value.status == 409 and taken.value.errcode == "M_UNKNOWN"
    with pytest.raises(errors.NotFound):
        await api.set_room_alias(pb.SetRoomAliasRequest(alias="#x:test", room_id="!unknown:test", creator=BOB))
    with pytest.raises(errors.InvalidParam):
        await api.set_room_alias(pb.SetRoomAliasRequest(alias="hall", room_id=room.room_id, creator=BOB))

    found = await api.get_room_id_for_alias(pb.GetRoomIDForAliasRequest(alias="#hall:test"))
    assert (found.room_id, found.creator) == (room.room_id, ALICE)
    assert (await api.get_room_id_for_alias(pb.GetRoomIDForAliasRequest(alias="#none:test"))).room_id == ""
    listed = await api.get_aliases_for_room(pb.GetAliasesForRoomRequest(room_id=room.room_id))
    assert list(listed.aliases) == ["#hall:test", "#lobby:test"]

    removed = await api.remove_room_alias(pb.RemoveRoomAliasRequest(alias="#lobby:test"))
    assert (removed.room_id, removed.creator) == (room.room_id, BOB)
    with pytest.raises(errors.NotFound):
        await api.remove_room_alias(pb.RemoveRoomAliasRequest(alias="#lobby:test"))
    listed = await api.get_aliases_for_room(pb.GetAliasesForRoomRequest(room_id=room.room_id))
    assert list(listed.aliases) == ["#hall:test"]


async def test_knock_and_kick(api: RoomserverAPI) -> None:
    room = TestRoom("10", creator=ALICE, join_rule="knock")
    room.invite(ALICE, BOB)
    room.join(BOB)
    room.knock(CAROL)
    room.kick(ALICE, BOB)
    assert set(outcomes(await send(api, room.events))) == {pb.INPUT_OUTCOME_ACCEPTED}

    async def membership(user_id: str) -> str:
        return (await api.query_membership_for_user(pb.QueryMembershipForUserRequest(
            room_id=room.room_id, user_id=user_id))).membership

    assert await membership(CAROL) == "knock"
    assert await membership(BOB) == "leave"
    # Bob may not kick anyone back (power 0).
    revenge = room.kick(BOB, ALICE, advance=False)
    assert outcomes(await send(api, [revenge])) == [pb.INPUT_OUTCOME_REJECTED]


async def test_a_message_on_the_latest_event_is_checked_once_against_the_state(
        api: RoomserverAPI, running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its state before is the room's current state: the soft-fail check
    # against the current state would repeat the check against the state
    # before it, and its output changes no state.
    from matrixlib import auth_rules
    from roomserver.internal.input import processor

    room = TestRoom("10", creator=ALICE)
    room.join(BOB)
    assert set(outcomes(await send(api, room.events))) == {pb.INPUT_OUTCOME_ACCEPTED}
    outputs_before = len(await read_output(running.log))
    checked: list[str] = []
    real_check = auth_rules.check_auth_rules

    def counting_check(event: Event, *args: object, **kwargs: object) -> None:
        checked.append(event.event_id)
        real_check(event, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(processor, "check_auth_rules", counting_check)
    message = room.message(BOB, "hello")
    assert outcomes(await send(api, [message])) == [pb.INPUT_OUTCOME_ACCEPTED]
    assert checked == [message.event_id] * 2  # its auth events, the state before it
    [output] = new_room_events((await read_output(running.log))[outputs_before:])
    assert output.event.event_id == message.event_id
    assert list(output.adds_state_event_ids) == [] and list(output.removes_state_event_ids) == []
    assert list(output.latest_event_ids) == [message.event_id]
