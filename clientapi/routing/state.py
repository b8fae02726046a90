"""GET /rooms/{roomId}/state[/{eventType}[/{stateKey}]] and GET /joined_rooms.

Spec: data/api/client-server/room_state.yaml, list_joined_rooms.yaml.
State is served to joined members only (403 otherwise); a missing piece of
state is 404 M_NOT_FOUND.
"""

from __future__ import annotations

from myelin.roomserver.v1 import events_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.format import client_event
from clientapi.internal.membership import current_membership
from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.http import json_response
from matrixlib.events import Event
from matrixlib.room_versions import get_room_version


async def _require_joined(services: Services, room_id: str, user_id: str) -> None:
    found = await current_membership(services, room_id, user_id)
    if not found.is_in_room:
        raise errors.Forbidden(f"{user_id} is not in room {room_id}")


async def _state(services: Services, room_id: str, wanted: list[events_pb2.StateKeyTuple]) -> list[Event]:
    answer = await services.roomserver.query_latest_events_and_state(
        rs_pb.QueryLatestEventsAndStateRequest(room_id=room_id, state_to_fetch=wanted))
    if not answer.room_exists:
        raise errors.NotFound(f"Unknown room {room_id}")
    version = get_room_version(answer.room_version)
    return [Event.from_json(e.pdu_json, version, e.event_id or None) for e in answer.state_events]


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def get_state_event(request: Request, room_id: str, event_type: str, state_key: str = "") -> HTTPResponse:
        device = await services.device_for(request)
        await _require_joined(services, room_id, device.user_id)
        found = [e for e in await _state(services, room_id, [events_pb2.StateKeyTuple(
            event_type=event_type, state_key=state_key)])
            if e.type == event_type and e.state_key == state_key]
        if not found:
            raise errors.NotFound(f"No {event_type} state with key {state_key!r} in {room_id}")
        if request.args.get("format") == "event":
            return json_response(client_event(found[0]))
        return json_response(found[0].content)

    async def get_room_state(request: Request, room_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        await _require_joined(services, room_id, device.user_id)
        return json_response([client_event(e) for e in await _state(services, room_id, [])])

    async def joined_rooms(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        answer = await services.roomserver.query_rooms_for_user(
            rs_pb.QueryRoomsForUserRequest(user_id=device.user_id, membership="join"))
        return json_response({"joined_rooms": list(answer.room_ids)})

    client_route(blueprint, "/rooms/<room_id>/state/<event_type>/<state_key>", get_state_event, ["GET"],
                 name="get_state_event")
    client_route(blueprint, "/rooms/<room_id>/state/<event_type>", get_state_event, ["GET"],
                 name="get_state_event_empty_key")
    client_route(blueprint, "/rooms/<room_id>/state", get_room_state, ["GET"], name="get_room_state")
    client_route(blueprint, "/joined_rooms", joined_rooms, ["GET"], name="joined_rooms")
