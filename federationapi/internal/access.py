"""What a remote server may read of a room: the checks every inbound read
endpoint makes before answering (server-server-api "Retrieving events",
"Server Access Control Lists").

An ACL-banned origin is refused (403) for anything in the room; state,
auth chains and history walks need the origin to have a joined member in
the room's current state, as Synapse requires; single events need the
origin to be allowed to see them by history visibility. Unknown rooms and
events are 404s.
"""

from __future__ import annotations

import json
from typing import Any

from myelin.roomserver.v1 import events_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common import errors
from matrixlib import events as ev
from matrixlib.events import Event
from matrixlib.room_versions import get_room_version
from matrixlib.server_acl import server_allowed_by_acl
from roomserver.api import FederationRoomserverAPI


def pdu_of(event: events_pb2.Event) -> dict[str, Any]:
    """The PDU as it was signed (the stored JSON)."""
    pdu: dict[str, Any] = json.loads(event.pdu_json)
    return pdu


def room_id_of(event: events_pb2.Event) -> str:
    # Room version 12 create events carry no room_id: the Event derives it.
    return Event.from_json(event.pdu_json, get_room_version(event.room_version), event.event_id or None).room_id


class RoomAccess:
    def __init__(self, roomserver: FederationRoomserverAPI) -> None:
        self.roomserver = roomserver

    async def room_info(self, room_id: str) -> rs_pb.QueryRoomInfoResponse:
        info = await self.roomserver.query_room_info(rs_pb.QueryRoomInfoRequest(room_id=room_id))
        if not info.room_exists or info.is_stub:
            raise errors.NotFound(f"Unknown room {room_id}")
        return info

    async def check_acl(self, room_id: str, origin: str) -> None:
        answer = await self.roomserver.query_latest_events_and_state(rs_pb.QueryLatestEventsAndStateRequest(
            room_id=room_id, state_to_fetch=[events_pb2.StateKeyTuple(event_type=ev.SERVER_ACL, state_key="")]))
        for event in answer.state_events:
            content = pdu_of(event).get("content")
            if not server_allowed_by_acl(content if isinstance(content, dict) else {}, origin):
                raise errors.Forbidden("Server is banned from this room by its server ACL")

    async def check_origin_in_room(self, room_id: str, origin: str) -> None:
        """404 for an unknown room, 403 when the ACL bans the origin or no
        user of the origin is joined."""
        await self.room_info(room_id)
        await self.check_acl(room_id, origin)
        members = await self.roomserver.query_memberships_for_room(
            rs_pb.QueryMembershipsForRoomRequest(room_id=room_id, joined_only=True))
        for member in members.member_events:
            state_key = pdu_of(member).get("state_key")
            if isinstance(state_key, str) and state_key.partition(":")[2] == origin:
                return
        raise errors.Forbidden(f"{origin} is not in room {room_id}")

    async def visible_event(self, event_id: str, origin: str, room_id: str | None = None) -> events_pb2.Event:
        """The event, when it exists (in ``room_id`` if given) and the
        origin may see it: 404 / 403 otherwise."""
        found = await self.roomserver.query_events_by_id(rs_pb.QueryEventsByIDRequest(event_ids=[event_id]))
        if not found.events or (room_id is not None and room_id_of(found.events[0]) != room_id):
            raise errors.NotFound(f"Unknown event {event_id}")
        event = found.events[0]
        await self.check_acl(room_id_of(event), origin)
        allowed = await self.roomserver.query_server_allowed_to_see_event(
            rs_pb.QueryServerAllowedToSeeEventRequest(event_id=event_id, server_name=origin))
        if not allowed.event_exists:
            raise errors.NotFound(f"Unknown event {event_id}")
        if not allowed.allowed:
            raise errors.Forbidden(f"{origin} may not see event {event_id}")
        return event

    async def event_in_room(self, room_id: str, event_id: str) -> events_pb2.Event:
        found = await self.roomserver.query_events_by_id(rs_pb.QueryEventsByIDRequest(event_ids=[event_id]))
        if not found.events or room_id_of(found.events[0]) != room_id:
            raise errors.NotFound(f"Unknown event {event_id} in room {room_id}")
        return found.events[0]
