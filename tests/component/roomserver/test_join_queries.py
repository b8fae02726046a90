"""QueryLatestEventsAndState answers ``server_joined`` for
``joined_server_name``: a local join builds its event on that one answer
(clientapi/internal/membership.py) instead of asking QueryMembershipForUser
first. Both bindings; the room server's memory path (a sole writer's second
identical query) and its database path."""

from __future__ import annotations

from myelin.roomserver.v1 import events_pb2
from myelin.roomserver.v1 import roomserver_pb2 as pb

from matrixlib.events import CREATE, JOIN_RULES, MEMBER, POWER_LEVELS
from roomserver.api import RoomserverAPI
from tests.builders import TestRoom
from tests.component.roomserver.conftest import Running
from tests.component.roomserver.test_roomserver import OUTLIER, outcomes, proto_ids, send

ALICE = "@alice:test"
BOB = "@bob:test"
REMOTE = "@dave:remote.example"


def join_state_request(room_id: str, user_id: str, server_name: str = "") -> pb.QueryLatestEventsAndStateRequest:
    """What a join of ``user_id`` asks: its member event's auth types."""
    keys = [(CREATE, ""), (POWER_LEVELS, ""), (MEMBER, user_id), (JOIN_RULES, "")]
    return pb.QueryLatestEventsAndStateRequest(
        room_id=room_id, joined_server_name=server_name,
        state_to_fetch=[events_pb2.StateKeyTuple(event_type=t, state_key=k) for t, k in keys])


async def server_joined(api: RoomserverAPI, room_id: str, user_id: str, server_name: str) -> bool:
    """The answer twice (the second may come from memory): both agree."""
    first = await api.query_latest_events_and_state(join_state_request(room_id, user_id, server_name))
    again = await api.query_latest_events_and_state(join_state_request(room_id, user_id, server_name))
    assert first.room_exists and again.room_exists
    assert first.server_joined is again.server_joined
    assert proto_ids(first.state_events) == proto_ids(again.state_events)
    return first.server_joined


async def test_server_joined_with_the_state(api: RoomserverAPI) -> None:
    room = TestRoom("12", creator=REMOTE, server_name="remote.example")
    room.join(BOB)
    assert set(outcomes(await send(api, room.events))) == {pb.INPUT_OUTCOME_ACCEPTED}

    answer = await api.query_latest_events_and_state(join_state_request(room.room_id, ALICE, "test"))
    assert answer.server_joined and answer.room_version == "12"
    # The state a join is built on comes with it: no member event of Alice yet.
    assert proto_ids(answer.state_events) == [room.create.event_id, room.state[(POWER_LEVELS, "")].event_id,
                                              room.state[(JOIN_RULES, "")].event_id]
    assert list(answer.latest_event_ids) == [room.events[-1].event_id]
    assert not (await api.query_latest_events_and_state(join_state_request(room.room_id, ALICE))).server_joined
    assert await server_joined(api, room.room_id, ALICE, "test")
    assert await server_joined(api, room.room_id, ALICE, "remote.example")
    assert not await server_joined(api, room.room_id, ALICE, "elsewhere.example")
    # A server name is matched whole, not as a suffix.
    assert not await server_joined(api, room.room_id, ALICE, "est")

    # Bob, this server's only member, leaves: the server is not in the room any more.
    leave = room.leave(BOB)
    assert outcomes(await send(api, [leave])) == [pb.INPUT_OUTCOME_ACCEPTED]
    assert not await server_joined(api, room.room_id, BOB, "test")
    assert await server_joined(api, room.room_id, BOB, "remote.example")


async def test_server_joined_unknown_room_and_stub(api: RoomserverAPI, running: Running) -> None:
    unknown = await api.query_latest_events_and_state(join_state_request("!nowhere:test", ALICE, "test"))
    assert not unknown.room_exists and not unknown.server_joined

    # An invite over federation to a room this server is not in: a stub, no current state.
    room = TestRoom("12", creator=REMOTE, server_name="remote.example")
    invite = room.invite(REMOTE, BOB)
    assert outcomes(await send(api, [invite], OUTLIER)) == [pb.INPUT_OUTCOME_ACCEPTED]
    stub = await api.query_latest_events_and_state(join_state_request(room.room_id, BOB, "test"))
    assert not stub.server_joined
    stub_remote = await api.query_latest_events_and_state(join_state_request(room.room_id, BOB, "remote.example"))
    assert not stub_remote.server_joined  # no current state to be joined in
