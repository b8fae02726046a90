"""POST /rooms/{roomId}/forget (data/api/client-server/leaving.yaml).

Served by the sync API because forgetting is about what /sync shows: a
forgotten room no longer appears in the ``leave`` section, not even with
``include_leave``. The room is forgotten as of the user's current
membership event: joining (and leaving) it again brings it back, as in
Synapse. The membership is the room server's (the read model may not have
the leave yet when a client forgets right after leaving). A user still in
the room (joined, invited or knocking) gets 400 M_UNKNOWN; forgetting a
room the user never was in does nothing.
"""

from __future__ import annotations

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response
from roomserver.api import MembershipQueryAPI
from syncapi.routing.auth import CLIENT_PREFIXES, authenticate
from syncapi.storage.database import SyncDatabase
from syncapi.storage.tables import forgotten_rooms as forgotten_t
from userapi.api import AuthenticationAPI

LEFT = ("leave", "ban")


async def forget_room(database: SyncDatabase, roomserver: MembershipQueryAPI, user_id: str, room_id: str) -> None:
    found = await roomserver.query_membership_for_user(
        rs_pb.QueryMembershipForUserRequest(room_id=room_id, user_id=user_id))
    if not found.room_exists or not found.membership or not found.event_id:
        return
    if found.membership not in LEFT:
        raise errors.MatrixError(f"{user_id} is still in room {room_id}: leave it first", http_status=400)
    db = database.database
    async with db.transaction() as conn:
        await conn.execute(db.upsert(
            forgotten_t.forgotten_rooms,
            {"user_id": user_id, "room_id": room_id, "membership_event_id": found.event_id},
            ["user_id", "room_id"]))


def register(blueprint: Blueprint, database: SyncDatabase, roomserver: MembershipQueryAPI,
             userapi: AuthenticationAPI) -> None:
    async def forget(request: Request, room_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        await forget_room(database, roomserver, requester.user_id, room_id)
        return json_response({})

    for index, prefix in enumerate(CLIENT_PREFIXES):
        blueprint.add_route(forget, prefix + "/rooms/<room_id>/forget", methods=["POST"],
                            name=f"forget_room_{index}", strict_slashes=False, unquote=True)
