"""GET /_matrix/federation/v1/query/profile and /v1/query/directory.

Spec: data/api/server-server/query.yaml. Profiles come from the user API,
aliases from the room server's alias directory; only this server's users
and aliases are answered.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2 as user_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response
from matrixlib.ids import is_valid_room_alias, is_valid_user_id
from roomserver.api import FederationRoomserverAPI

V1 = "/_matrix/federation/v1"
PROFILE_FIELDS = ("displayname", "avatar_url")


class ProfileQueryAPI(Protocol):
    """The part of the user API the federation API reads."""

    async def query_profile(self, req: user_pb.QueryProfileRequest) -> user_pb.Profile: ...


def _domain(identifier: str) -> str:
    return identifier.partition(":")[2]


def add_query_routes(blueprint: Blueprint, server_name: str, roomserver: FederationRoomserverAPI,
                     userapi: ProfileQueryAPI) -> None:
    async def get_profile(request: Request) -> HTTPResponse:
        user_id = request.args.get("user_id")
        if not user_id:
            raise errors.MissingParam("user_id is required")
        if not is_valid_user_id(user_id):
            raise errors.InvalidParam("user_id is not a valid user ID")
        if _domain(user_id) != server_name:
            raise errors.InvalidParam("User is not hosted on this homeserver")
        field = request.args.get("field")
        if field is not None and field not in PROFILE_FIELDS:
            raise errors.NotFound(f"The profile field {field} does not exist")
        profile = await userapi.query_profile(user_pb.QueryProfileRequest(user_id=user_id))
        values = {"displayname": profile.display_name, "avatar_url": profile.avatar_url}
        body: dict[str, Any] = {k: v for k, v in values.items() if v and (field is None or k == field)}
        return json_response(body)

    async def get_directory(request: Request) -> HTTPResponse:
        alias = request.args.get("room_alias")
        if not alias:
            raise errors.MissingParam("room_alias is required")
        if not is_valid_room_alias(alias):
            raise errors.InvalidParam("room_alias is not a valid room alias")
        if _domain(alias) != server_name:
            raise errors.NotFound("Room alias not found.")
        answer = await roomserver.get_room_id_for_alias(rs_pb.GetRoomIDForAliasRequest(alias=alias))
        if not answer.room_id:
            raise errors.NotFound("Room alias not found.")
        members = await roomserver.query_memberships_for_room(
            rs_pb.QueryMembershipsForRoomRequest(room_id=answer.room_id, joined_only=True))
        servers = {server_name: None}
        for member in members.member_events:
            state_key = json.loads(member.pdu_json).get("state_key")
            if isinstance(state_key, str) and _domain(state_key):
                servers[_domain(state_key)] = None
        return json_response({"room_id": answer.room_id, "servers": list(servers)})

    blueprint.add_route(get_profile, f"{V1}/query/profile", methods=["GET"], name="query_profile")
    blueprint.add_route(get_directory, f"{V1}/query/directory", methods=["GET"], name="query_directory")
