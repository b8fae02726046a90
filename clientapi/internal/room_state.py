"""The current state of a room, read from the room server as events."""

from __future__ import annotations

from myelin.roomserver.v1 import events_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from matrixlib.events import Event, StateKey
from matrixlib.room_versions import get_room_version
from roomserver.api import StateQueryAPI


async def current_state_events(roomserver: StateQueryAPI, room_id: str,
                               wanted: list[StateKey] | None = None) -> dict[StateKey, Event] | None:
    """The wanted pieces of the room's current state (all of it when
    ``wanted`` is None); None for a room the room server does not know."""
    answer = await roomserver.query_latest_events_and_state(rs_pb.QueryLatestEventsAndStateRequest(
        room_id=room_id,
        state_to_fetch=[events_pb2.StateKeyTuple(event_type=t, state_key=k) for t, k in wanted or []]))
    if not answer.room_exists:
        return None
    version = get_room_version(answer.room_version)
    state: dict[StateKey, Event] = {}
    for proto in answer.state_events:
        event = Event.from_json(proto.pdu_json, version, proto.event_id or None)
        if event.state_key is not None:
            state[event.state_tuple] = event
    return state
