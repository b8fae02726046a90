"""GET/POST /_matrix/federation/v1/publicRooms: this server's published
room directory for other servers.

Spec: data/api/server-server/public_rooms.yaml. The listing is the one the
client API's /publicRooms answers (``PublicRoomDirectory``); there are no
application service networks, so ``third_party_instance_id`` lists nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response, parse_json_body, query_int

V1 = "/_matrix/federation/v1"
DEFAULT_LIMIT = 100
MAX_LIMIT = 500


class PublicRoomDirectory(Protocol):
    async def public_rooms(self, *, limit: int, since: str | None, search_term: str | None,
                           room_types: list[Any] | None) -> dict[str, Any]: ...


def _empty() -> dict[str, Any]:
    return {"chunk": [], "total_room_count_estimate": 0}


def add_public_rooms_routes(blueprint: Blueprint, directory: PublicRoomDirectory) -> None:
    async def get_public_rooms(request: Request) -> HTTPResponse:
        limit = query_int(request, "limit", DEFAULT_LIMIT, minimum=1) or DEFAULT_LIMIT
        if request.args.get("third_party_instance_id"):
            return json_response(_empty())
        return json_response(await directory.public_rooms(
            limit=min(limit, MAX_LIMIT), since=request.args.get("since"), search_term=None, room_types=None))

    async def post_public_rooms(request: Request) -> HTTPResponse:
        body = parse_json_body(request, allow_empty=True)
        limit = body.get("limit", DEFAULT_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise errors.BadJSON("limit must be an integer")
        since = body.get("since")
        if since is not None and not isinstance(since, str):
            raise errors.BadJSON("since must be a string")
        search = body.get("filter") or {}
        if not isinstance(search, dict):
            raise errors.BadJSON("filter must be an object")
        term = search.get("generic_search_term")
        if term is not None and not isinstance(term, str):
            raise errors.BadJSON("generic_search_term must be a string")
        room_types = search.get("room_types")
        if room_types is not None and not isinstance(room_types, list):
            raise errors.BadJSON("room_types must be a list")
        if body.get("third_party_instance_id"):
            return json_response(_empty())
        return json_response(await directory.public_rooms(
            limit=min(max(limit, 1), MAX_LIMIT), since=since, search_term=term, room_types=room_types))

    blueprint.add_route(get_public_rooms, f"{V1}/publicRooms", methods=["GET"], name="public_rooms")
    blueprint.add_route(post_public_rooms, f"{V1}/publicRooms", methods=["POST"], name="public_rooms_filtered")
