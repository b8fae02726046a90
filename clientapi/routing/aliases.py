"""Room aliases: PUT/GET/DELETE /directory/room/{roomAlias} and
GET /rooms/{roomId}/aliases.

Spec: data/api/client-server/directory.yaml; content/client-server-api,
"Room aliases". The room server keeps the directory. As in Synapse, creating
an alias needs membership of the room, deleting one needs being its creator
or the power to send ``m.room.canonical_alias`` (and takes the alias out of
the room's canonical alias event when it is there), and the list of a
room's aliases is for its members (or anyone, in a world-readable room).
A remote alias is resolved by its server, through the federation API.
"""

from __future__ import annotations

import logging
from typing import Any

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.aliases import parse_local_alias, resolve_alias_with_servers
from clientapi.internal.membership import current_membership
from clientapi.internal.room_state import current_state_events
from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.eventbuilder import build_local_event
from common.http import json_response, parse_json_body
from matrixlib import events as ev
from matrixlib.events import Event, StateKey
from matrixlib.power_levels import PowerLevels
from matrixlib.room_versions import get_room_version

logger = logging.getLogger(__name__)


async def room_state(services: Services, room_id: str, wanted: list[StateKey]) -> dict[StateKey, Event] | None:
    """The wanted pieces of the room's current state; None for an unknown room."""
    return await current_state_events(services.roomserver, room_id, wanted)


async def _remove_from_canonical_alias(services: Services, room_id: str, alias: str, user_id: str,
                                       state: dict[StateKey, Event]) -> None:
    """Sends a new m.room.canonical_alias without ``alias`` when it names it
    (best effort, as Synapse: the alias is gone either way)."""
    current = state.get((ev.CANONICAL_ALIAS, ""))
    if current is None:
        return
    content: dict[str, Any] = dict(current.content)
    changed = False
    if content.get("alias") == alias:
        del content["alias"]
        changed = True
    alt = content.get("alt_aliases")
    if isinstance(alt, list) and alias in alt:
        content["alt_aliases"] = [a for a in alt if a != alias]
        changed = True
    if not changed:
        return
    try:
        event = await build_local_event(
            services.roomserver, room_id=room_id, type=ev.CANONICAL_ALIAS, sender=user_id, content=content,
            state_key="", server_name=services.server_name, signing_key=services.signing_key)
        await services.input_events([event])
    except errors.MatrixError as e:
        logger.info("canonical alias of %s not updated after deleting %s: %s", room_id, alias, e)


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def put_alias(request: Request, room_alias: str) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request)
        room_id = params.require_str(body, "room_id")
        parse_local_alias(services, room_alias)
        membership = await current_membership(services, room_id, device.user_id)
        if not membership.room_exists:
            raise errors.NotFound(f"Unknown room {room_id}")
        if membership.membership != "join":
            raise errors.Forbidden("You must be in the room to create an alias for it")
        # A taken alias is 409 M_UNKNOWN (the room server's answer).
        await services.roomserver.set_room_alias(rs_pb.SetRoomAliasRequest(
            alias=room_alias, room_id=room_id, creator=device.user_id))
        return json_response({})

    async def get_alias(request: Request, room_alias: str) -> HTTPResponse:
        room_id, remote_servers = await resolve_alias_with_servers(services, room_alias)
        if remote_servers is not None:
            return json_response({"room_id": room_id, "servers": remote_servers})
        servers = [services.server_name]
        members = await services.roomserver.query_memberships_for_room(
            rs_pb.QueryMembershipsForRoomRequest(room_id=room_id, joined_only=True))
        for member in members.member_events:
            sender = Event.from_json(member.pdu_json, get_room_version(member.room_version),
                                     member.event_id or None).state_key or ""
            server = sender.partition(":")[2]
            if server and server not in servers:
                servers.append(server)
        return json_response({"room_id": room_id, "servers": servers})

    async def delete_alias(request: Request, room_alias: str) -> HTTPResponse:
        device = await services.device_for(request)
        parse_local_alias(services, room_alias)
        found = await services.roomserver.get_room_id_for_alias(rs_pb.GetRoomIDForAliasRequest(alias=room_alias))
        if not found.room_id:
            raise errors.NotFound(f"Room alias {room_alias} not found")
        state = await room_state(services, found.room_id,
                                 [(ev.CREATE, ""), (ev.POWER_LEVELS, ""), (ev.CANONICAL_ALIAS, "")]) or {}
        if found.creator != device.user_id:
            create = state.get((ev.CREATE, ""))
            membership = await current_membership(services, found.room_id, device.user_id)
            if create is None or membership.membership != "join":
                raise errors.Forbidden("You may not delete this alias")
            levels = PowerLevels.from_state(state, create.room_version)
            if levels.user_level(device.user_id) < levels.events_level(ev.CANONICAL_ALIAS, True):
                raise errors.Forbidden("You may not delete this alias")
        await services.roomserver.remove_room_alias(rs_pb.RemoveRoomAliasRequest(alias=room_alias))
        await _remove_from_canonical_alias(services, found.room_id, room_alias, device.user_id, state)
        return json_response({})

    async def get_room_aliases(request: Request, room_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        membership = await current_membership(services, room_id, device.user_id)
        if membership.membership != "join":
            state = await room_state(services, room_id, [(ev.HISTORY_VISIBILITY, "")]) or {}
            visibility = state.get((ev.HISTORY_VISIBILITY, ""))
            if visibility is None or visibility.content.get("history_visibility") != "world_readable":
                raise errors.Forbidden("You are not in this room")
        answer = await services.roomserver.get_aliases_for_room(rs_pb.GetAliasesForRoomRequest(room_id=room_id))
        return json_response({"aliases": list(answer.aliases)})

    client_route(blueprint, "/directory/room/<room_alias>", put_alias, ["PUT"], name="alias_put")
    client_route(blueprint, "/directory/room/<room_alias>", get_alias, ["GET"], name="alias_get")
    client_route(blueprint, "/directory/room/<room_alias>", delete_alias, ["DELETE"], name="alias_delete")
    client_route(blueprint, "/rooms/<room_id>/aliases", get_room_aliases, ["GET"], name="room_aliases")
