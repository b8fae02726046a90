"""The published room directory: GET/PUT /directory/list/room/{roomId} and
GET/POST /publicRooms.

Spec: data/api/client-server/list_public_rooms.yaml,
definitions/public_rooms_chunk.yaml. ``server`` naming another server
reads that server's directory through the federation API. Rooms are
ordered by joined members, most first, then by room ID; the ``since`` token
is an offset into that order. Publishing needs the power to set the room's
canonical alias, as in Synapse.
"""

from __future__ import annotations

import json
from typing import Any

from myelin.federationapi.v1 import federationapi_pb2 as fed_pb
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.membership import current_membership
from clientapi.internal.room_state import current_state_events
from clientapi.internal.services import Services
from clientapi.routing import client_route
from clientapi.storage.database import ClientAPIDatabase
from common import errors
from common.http import json_response, parse_json_body, query_int
from common.room_directory import parse_offset_token, public_room_matches
from matrixlib import events as ev
from matrixlib.events import Event, StateKey
from matrixlib.ids import is_valid_server_name
from matrixlib.power_levels import PowerLevels
from roomserver.api import ClientRoomserverAPI

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
_CHUNK_STATE: list[StateKey] = [
    (ev.CREATE, ""), (ev.NAME, ""), (ev.TOPIC, ""), (ev.CANONICAL_ALIAS, ""), ("m.room.avatar", ""),
    (ev.JOIN_RULES, ""), (ev.HISTORY_VISIBILITY, ""), (ev.GUEST_ACCESS, ""), (ev.POWER_LEVELS, ""),
]


async def _room_state(roomserver: ClientRoomserverAPI, room_id: str, wanted: list[StateKey]
                      ) -> dict[StateKey, Event] | None:
    return await current_state_events(roomserver, room_id, wanted)


def _text(state: dict[StateKey, Event], key: StateKey, field: str) -> str | None:
    event = state.get(key)
    value = event.content.get(field) if event is not None else None
    return value if isinstance(value, str) and value else None


async def _chunk_entry(roomserver: ClientRoomserverAPI, room_id: str) -> dict[str, Any] | None:
    info = await roomserver.query_room_info(rs_pb.QueryRoomInfoRequest(room_id=room_id))
    state = await _room_state(roomserver, room_id, _CHUNK_STATE)
    if not info.room_exists or state is None:
        return None
    entry: dict[str, Any] = {
        "room_id": room_id,
        "num_joined_members": info.joined_member_count,
        "world_readable": _text(state, (ev.HISTORY_VISIBILITY, ""), "history_visibility") == "world_readable",
        "guest_can_join": _text(state, (ev.GUEST_ACCESS, ""), "guest_access") == "can_join",
        "join_rule": _text(state, (ev.JOIN_RULES, ""), "join_rule") or "invite",
    }
    for key, field, name in [((ev.NAME, ""), "name", "name"), ((ev.TOPIC, ""), "topic", "topic"),
                             ((ev.CANONICAL_ALIAS, ""), "alias", "canonical_alias"),
                             (("m.room.avatar", ""), "url", "avatar_url"),
                             ((ev.CREATE, ""), "type", "room_type")]:
        value = _text(state, key, field)
        if value is not None:
            entry[name] = value
    return entry


class PublishedRoomDirectory:
    """The published room list, one page at a time: what /publicRooms
    answers, for clients here and for other servers (the federation API)."""

    def __init__(self, roomserver: ClientRoomserverAPI, database: ClientAPIDatabase) -> None:
        self._roomserver = roomserver
        self._database = database

    async def public_rooms(self, *, limit: int, since: str | None, search_term: str | None,
                           room_types: list[Any] | None) -> dict[str, Any]:
        offset = parse_offset_token(since)
        entries = []
        for room_id in await self._database.published_rooms():
            entry = await _chunk_entry(self._roomserver, room_id)
            if entry is not None and public_room_matches(entry, search_term, room_types):
                entries.append(entry)
        entries.sort(key=lambda e: (-int(e["num_joined_members"]), e["room_id"]))
        page = entries[offset:offset + limit]
        body: dict[str, Any] = {"chunk": page, "total_room_count_estimate": len(entries)}
        if offset + limit < len(entries):
            body["next_batch"] = f"o{offset + limit}"
        if offset > 0:
            body["prev_batch"] = f"o{max(0, offset - limit)}"
        return body


def add_routes(blueprint: Blueprint, services: Services) -> None:
    def remote_server(request: Request) -> str | None:
        """The other server whose directory is asked for, if any."""
        server: str | None = request.args.get("server")
        if not server or server == services.server_name:
            return None
        if not is_valid_server_name(server):
            raise errors.InvalidParam(f"{server!r} is not a valid server name")
        if services.federation is None:
            raise errors.MatrixError("This server does not federate", http_status=502)
        return server

    async def remote_listing(server: str, body: dict[str, Any]) -> HTTPResponse:
        assert services.federation is not None
        answer = await services.federation.query_public_rooms(fed_pb.QueryPublicRoomsRequest(
            server_name=server, request_json=json.dumps(body).encode()))
        return json_response(json.loads(answer.response_json))

    directory = PublishedRoomDirectory(services.roomserver, services.database)

    async def listing(limit: int, since: str | None, term: str | None,
                      room_types: list[Any] | None) -> HTTPResponse:
        return json_response(await directory.public_rooms(limit=limit, since=since, search_term=term,
                                                          room_types=room_types))

    async def get_public_rooms(request: Request) -> HTTPResponse:
        server = remote_server(request)
        limit = query_int(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT) or DEFAULT_LIMIT
        since = request.args.get("since")
        if server is not None:
            return await remote_listing(server, {"limit": limit, **({"since": since} if since else {})})
        return await listing(limit, since, None, None)

    async def post_public_rooms(request: Request) -> HTTPResponse:
        await services.device_for(request)
        server = remote_server(request)
        body = parse_json_body(request, allow_empty=True)
        limit = body.get("limit", DEFAULT_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise errors.BadJSON("limit must be an integer")
        since = params.optional_str(body, "since")
        search = params.optional_dict(body, "filter") or {}
        term = params.optional_str(search, "generic_search_term")
        room_types = params.optional_list(search, "room_types") if "room_types" in search else None
        if server is not None:
            remote_body: dict[str, Any] = {"limit": min(max(limit, 1), MAX_LIMIT)}
            for key in ("since", "filter", "include_all_networks", "third_party_instance_id"):
                if key in body:
                    remote_body[key] = body[key]
            return await remote_listing(server, remote_body)
        return await listing(min(max(limit, 1), MAX_LIMIT), since, term, room_types)

    async def get_visibility(request: Request, room_id: str) -> HTTPResponse:
        info = await services.roomserver.query_room_info(rs_pb.QueryRoomInfoRequest(room_id=room_id))
        if not info.room_exists:
            raise errors.NotFound("Room not found")
        published = await services.database.is_room_published(room_id)
        return json_response({"visibility": "public" if published else "private"})

    async def put_visibility(request: Request, room_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request)
        visibility = params.optional_str(body, "visibility") or "public"
        if visibility not in ("public", "private"):
            raise errors.InvalidParam("visibility must be public or private")
        state = await _room_state(services.roomserver, room_id, [(ev.CREATE, ""), (ev.POWER_LEVELS, "")])
        if state is None:
            raise errors.NotFound("Room not found")
        membership = await current_membership(services, room_id, device.user_id)
        create = state.get((ev.CREATE, ""))
        if not membership.is_in_room or create is None:
            raise errors.Forbidden("You are not in this room")
        levels = PowerLevels.from_state(state, create.room_version)
        if levels.user_level(device.user_id) < levels.events_level(ev.CANONICAL_ALIAS, True):
            raise errors.Forbidden("You may not change this room's visibility in the directory")
        await services.database.set_room_published(room_id, visibility == "public")
        return json_response({})

    client_route(blueprint, "/publicRooms", get_public_rooms, ["GET"], name="get_public_rooms")
    client_route(blueprint, "/publicRooms", post_public_rooms, ["POST"], name="post_public_rooms")
    client_route(blueprint, "/directory/list/room/<room_id>", get_visibility, ["GET"], name="get_visibility")
    client_route(blueprint, "/directory/list/room/<room_id>", put_visibility, ["PUT"], name="put_visibility")
