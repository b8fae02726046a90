"""What one user may learn about another: GET /v1/mutual_rooms and
GET /admin/whois/{userId}.

Spec: data/api/client-server/mutual_rooms.yaml and admin.yaml. Rooms
shared are those both users have joined (the room server's memberships).
Without server admins, whois answers only about the caller themselves
(the spec allows restricting it so), from their devices' last seen
address and time.
"""

from __future__ import annotations

from typing import Any

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.http import json_response
from matrixlib.ids import InvalidIdentifierError, UserID

MUTUAL_ROOMS_PAGE = 100
V1_PREFIXES = ("/_matrix/client/v1",)


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def joined_rooms(user_id: str) -> list[str]:
        answer = await services.roomserver.query_rooms_for_user(
            rs_pb.QueryRoomsForUserRequest(user_id=user_id, membership="join"))
        return list(answer.room_ids)

    async def mutual_rooms(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        other = request.args.get("user_id")
        if not other:
            raise errors.MissingParam("Missing parameter: user_id")
        try:
            compliant = UserID.parse(other).is_compliant
        except InvalidIdentifierError:
            # The spec: an ID that is not a valid user is an empty list.
            return json_response({"joined": [], "count": 0})
        if not compliant:
            raise errors.InvalidParam("The user ID provided is not compliant")
        if other == device.user_id:
            raise errors.InvalidParam("You cannot ask for the rooms you share with yourself")
        since = request.args.get("from")
        offset = 0
        if since is not None:
            if not since.isdigit():
                raise errors.InvalidParam("Invalid from token")
            offset = int(since)
        theirs = set(await joined_rooms(other))
        shared = sorted(room for room in await joined_rooms(device.user_id) if room in theirs)
        page = shared[offset:offset + MUTUAL_ROOMS_PAGE]
        body: dict[str, Any] = {"joined": page, "count": len(shared)}
        if offset + MUTUAL_ROOMS_PAGE < len(shared):
            body["next_batch"] = str(offset + MUTUAL_ROOMS_PAGE)
        return json_response(body)

    async def whois(request: Request, user_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        if device.user_id != user_id:
            raise errors.Forbidden("You may only look up yourself")
        devices = await services.userapi.query_devices(ua_pb.QueryDevicesRequest(user_id=user_id))
        return json_response({"user_id": user_id, "devices": {
            # User agents are not kept.
            d.device_id: {"sessions": [{"connections": [{"ip": d.last_seen_ip, "last_seen": d.last_seen_ts}]}]}
            for d in devices.devices
        }})

    client_route(blueprint, "/mutual_rooms", mutual_rooms, ["GET"], name="mutual_rooms", prefixes=V1_PREFIXES)
    client_route(blueprint, "/admin/whois/<user_id>", whois, ["GET"], name="admin_whois")
