"""Our users' own leaves and knocks in rooms this server is not in (made
through another server by the federation API, input as outliers): the
membership is kept in a stub room, and a rejected remote invite is retired
for readers."""

from __future__ import annotations

import json

from myelin.roomserver.v1 import input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as pb

from roomserver.api import RoomserverAPI
from tests.builders import TestRoom, input_event
from tests.component.roomserver.conftest import Running, read_output

OUTLIER = input_log_pb2.INPUT_KIND_OUTLIER
BOB = "@bob:test"
REMOTE = "@dave:remote.example"


async def send_outlier(api: RoomserverAPI, room: TestRoom, *events: object) -> list[int]:
    answer = await api.input_room_events(pb.InputRoomEventsRequest(
        wait=True, events=[input_event(e, OUTLIER) for e in events]))  # type: ignore[arg-type]
    return [r.outcome for r in answer.results]


async def membership_of(api: RoomserverAPI, room_id: str, user_id: str) -> pb.QueryMembershipForUserResponse:
    return await api.query_membership_for_user(pb.QueryMembershipForUserRequest(room_id=room_id, user_id=user_id))


async def test_rejecting_a_remote_invite_retires_it(api: RoomserverAPI, running: Running) -> None:
    room = TestRoom("12", creator=REMOTE, server_name="remote.example", join_rule="invite")
    stripped = [{"type": "m.room.create", "state_key": "", "content": room.create.content, "sender": REMOTE}]
    invite = room.invite(REMOTE, BOB, unsigned={"invite_room_state": stripped})
    assert await send_outlier(api, room, invite) == [pb.INPUT_OUTCOME_ACCEPTED]
    # The leave the remote server's make_leave template gave (auth events unknown here).
    leave = room.leave(BOB)
    assert await send_outlier(api, room, leave) == [pb.INPUT_OUTCOME_ACCEPTED]

    found = await membership_of(api, room.room_id, BOB)
    assert (found.membership, found.event_id) == ("leave", leave.event_id)
    assert not (await api.query_rooms_for_user(pb.QueryRoomsForUserRequest(user_id=BOB))).room_ids
    retired = [o.retire_invite_event for o in await read_output(running.log)
               if o.WhichOneof("payload") == "retire_invite_event"]
    assert [(r.event_id, r.retired_by_event_id, r.membership, r.target_user_id) for r in retired] == [
        (invite.event_id, leave.event_id, "leave", BOB)]
    # Input again: nothing new.
    assert await send_outlier(api, room, leave) == [pb.INPUT_OUTCOME_DUPLICATE]


async def test_a_knock_through_another_server_is_kept(api: RoomserverAPI, running: Running) -> None:
    room = TestRoom("10", creator=REMOTE, server_name="remote.example", join_rule="knock")
    shown = [{"type": "m.room.name", "state_key": "", "content": {"name": "Far"}, "sender": REMOTE}]
    knock = room.knock(BOB, unsigned={"knock_room_state": shown})
    assert await send_outlier(api, room, knock) == [pb.INPUT_OUTCOME_ACCEPTED]
    info = await api.query_room_info(pb.QueryRoomInfoRequest(room_id=room.room_id))
    assert info.room_exists and info.is_stub
    assert (await membership_of(api, room.room_id, BOB)).membership == "knock"
    # Readers (the sync API's rooms.knock) get the knock with the state the room's server answered.
    [shown_knock] = [o.new_invite_event for o in await read_output(running.log)
                     if o.WhichOneof("payload") == "new_invite_event"]
    assert (shown_knock.event.event_id, shown_knock.target_user_id) == (knock.event_id, BOB)
    assert [json.loads(s) for s in shown_knock.invite_room_state_json] == shown
    # Retracted with a leave: the knock is retired for readers.
    leave = room.leave(BOB)
    assert await send_outlier(api, room, leave) == [pb.INPUT_OUTCOME_ACCEPTED]
    assert (await membership_of(api, room.room_id, BOB)).membership == "leave"
    retired = [o.retire_invite_event for o in await read_output(running.log)
               if o.WhichOneof("payload") == "retire_invite_event"]
    assert [(r.event_id, r.retired_by_event_id, r.membership) for r in retired] == [
        (knock.event_id, leave.event_id, "leave")]


async def test_another_servers_leave_outlier_is_not_a_membership(api: RoomserverAPI) -> None:
    room = TestRoom("10", creator=REMOTE, server_name="remote.example")
    other = "@eve:remote.example"
    leave = room.leave(other)
    # Its auth events are unknown: the ordinary outlier path refuses it.
    assert await send_outlier(api, room, leave) == [pb.INPUT_OUTCOME_INVALID]
    assert not (await membership_of(api, room.room_id, other)).room_exists


async def test_a_join_with_a_big_rooms_state_carries_all_of_it_to_readers(running: Running) -> None:
    """A join over federation comes with the room's state, which readers have
    never seen: the output carries all of it, also past the size over which
    ordinary state changes leave the JSON out."""
    api = running.component.api
    room = TestRoom("10", creator=REMOTE, server_name="remote.example")
    for i in range(700):
        room.join(f"@member{i:04d}:remote.example")
    state = list(room.state.values())
    assert sum(len(e.to_json()) for e in state) > 256 * 1024
    assert set(await send_outlier(api, room, *state)) == {pb.INPUT_OUTCOME_ACCEPTED}
    join = room.join(BOB)
    answer = await api.input_room_events(pb.InputRoomEventsRequest(wait=True, events=[
        input_event(join, state_event_ids=[e.event_id for e in state])]))
    assert [r.outcome for r in answer.results] == [pb.INPUT_OUTCOME_ACCEPTED]
    [output] = [o.new_room_event for o in await read_output(running.log)
                if o.WhichOneof("payload") == "new_room_event" and o.new_room_event.event.event_id == join.event_id]
    assert set(output.adds_state_event_ids) == {e.event_id for e in state} | {join.event_id}
    assert {e.event_id for e in output.adds_state_events} == {e.event_id for e in state}


async def test_back_into_a_room_no_local_user_is_in_any_more(api: RoomserverAPI, running: Running) -> None:
    """After our last user left, the room's servers send us nothing: a new
    invite comes only over /invite (an outlier whose auth events we may
    know) and is shown like one to a room we never were in; the rejoin over
    federation, with the room's state, is not soft-failed against our old
    copy of the state (where the user had left an invite-only room)."""
    room = TestRoom("10", creator=REMOTE, server_name="remote.example", join_rule="invite")
    room.invite(REMOTE, BOB)
    room.join(BOB)
    room.leave(BOB)
    answer = await api.input_room_events(room.input_request(room.events))
    assert {r.outcome for r in answer.results} == {pb.INPUT_OUTCOME_ACCEPTED}
    assert (await membership_of(api, room.room_id, BOB)).membership == "leave"

    missed = room.set_state("m.room.name", {"name": "while away"}, sender=REMOTE)
    second_invite = room.invite(REMOTE, BOB)
    assert all(a in {e.event_id for e in room.events[:-2]} for a in second_invite.auth_event_ids)
    assert await send_outlier(api, room, second_invite) == [pb.INPUT_OUTCOME_ACCEPTED]
    found = await membership_of(api, room.room_id, BOB)
    assert (found.membership, found.event_id) == ("invite", second_invite.event_id)
    invites = [o.new_invite_event for o in await read_output(running.log)
               if o.WhichOneof("payload") == "new_invite_event"]
    assert invites[-1].event.event_id == second_invite.event_id

    state = [e for e in room.state.values()]
    assert await send_outlier(api, room, missed) == [pb.INPUT_OUTCOME_ACCEPTED]
    rejoin = room.join(BOB)
    answer = await api.input_room_events(pb.InputRoomEventsRequest(wait=True, events=[
        input_event(rejoin, state_event_ids=[e.event_id for e in state])]))
    assert [r.outcome for r in answer.results] == [pb.INPUT_OUTCOME_ACCEPTED], answer
    assert (await membership_of(api, room.room_id, BOB)).membership == "join"
    # The room's state and extremities are the remote's now, not a merge with our old copy.
    info = await api.query_room_info(pb.QueryRoomInfoRequest(room_id=room.room_id))
    assert list(info.latest_event_ids) == [rejoin.event_id]
    current = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert {e.event_id for e in current.state_events} == {e.event_id for e in room.state.values()}
