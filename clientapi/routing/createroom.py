"""POST /createRoom.

Spec: data/api/client-server/create_room.yaml. The initial events are
built locally (``common.eventbuilder.build_room_creation_events``) and
input in one call; invites follow as separate membership events.
``visibility: public`` publishes the room in the room directory
(routing/directory.py). ``room_alias_name`` creates the local alias
``#<name>:<server>`` (400 M_ROOM_IN_USE when taken, checked before the room
is made) and the room's ``m.room.canonical_alias``. Not yet:
``invite_3pid`` (refused).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.aliases import parse_local_alias
from clientapi.internal.membership import profile_content, send_membership
from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.eventbuilder import (
    PRESET_PRIVATE,
    PRESET_PUBLIC,
    PRESETS,
    InitialStateEvent,
    RoomCreation,
    RoomCreationRequest,
    build_room_creation_events,
)
from common.http import json_response, parse_json_body
from matrixlib.ids import is_valid_user_id
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS

logger = logging.getLogger(__name__)


def _initial_state(items: list[Any]) -> list[InitialStateEvent]:
    parsed = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise errors.BadJSON(f"initial_state[{index}] must be an object")
        type = params.require_str(item, "type")
        state_key = params.optional_str(item, "state_key") or ""
        content = params.optional_dict(item, "content")
        if content is None:
            raise errors.MissingParam(f"initial_state[{index}] has no content")
        parsed.append(InitialStateEvent(type=type, state_key=state_key, content=content))
    return parsed


def parse_create_room(body: dict[str, Any], creator: str, default_version: str) -> RoomCreationRequest:
    visibility = params.optional_str(body, "visibility") or "private"
    if visibility not in ("public", "private"):
        raise errors.InvalidParam("visibility must be public or private")
    preset = params.optional_str(body, "preset")
    if preset is None:
        preset = PRESET_PUBLIC if visibility == "public" else PRESET_PRIVATE
    elif preset not in PRESETS:
        raise errors.InvalidParam(f"unknown preset {preset!r}")
    version_id = params.optional_str(body, "room_version") or default_version
    room_version = KNOWN_ROOM_VERSIONS.get(version_id)
    if room_version is None:
        raise errors.UnsupportedRoomVersion(f"This server does not support room version {version_id}")
    invite = params.optional_str_list(body, "invite")
    for user_id in invite:
        if not is_valid_user_id(user_id):
            raise errors.InvalidParam(f"not a user ID: {user_id!r}")
    if params.optional_list(body, "invite_3pid"):
        raise errors.InvalidParam("third-party invites are not supported")
    params.optional_bool(body, "is_direct")
    params.optional_str(body, "room_alias_name")
    return RoomCreationRequest(
        creator=creator,
        room_version=room_version,
        preset=preset,
        name=params.optional_str(body, "name"),
        topic=params.optional_str(body, "topic"),
        initial_state=_initial_state(params.optional_list(body, "initial_state")),
        invite=list(dict.fromkeys(u for u in invite if u != creator)),
        creation_content=params.optional_dict(body, "creation_content") or {},
        power_level_content_override=params.optional_dict(body, "power_level_content_override"),
    )


# Attempts at a room ID not taken yet (room version 12: the ID is the create
# event's hash, see _build_new_room).
CREATE_ATTEMPTS = 5


async def _build_new_room(services: Services, creation: RoomCreationRequest) -> RoomCreation:
    """The room's first events. From room version 12 the room ID is the
    hash of the create event, so two rooms created by one user in the same
    millisecond with the same options would be one room: each creation here
    takes a later timestamp than the one before, and a room ID the room
    server already knows (another process did the same) is built again one
    millisecond later, as Synapse retries a taken ID."""
    now = max(int(time.time() * 1000), services.last_room_creation_ts + 1)
    for _ in range(CREATE_ATTEMPTS):
        services.last_room_creation_ts = now
        built = build_room_creation_events(creation, server_name=services.server_name,
                                           signing_key=services.signing_key, now_ms=now)
        if not creation.room_version.hydra:
            return built
        taken = await services.roomserver.query_room_info(rs_pb.QueryRoomInfoRequest(room_id=built.room_id))
        if not taken.room_exists:
            return built
        now += 1
    raise errors.MatrixError("Could not find a free room ID; try again")


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def create_room(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        services.send_limiter.check(device.user_id)
        services.room_creation_limiter.check(device.user_id)
        body = parse_json_body(request)
        creation = parse_create_room(body, device.user_id, services.config.default_room_version)
        creation.creator_join_content = await profile_content(services, device.user_id)
        alias_name = params.optional_str(body, "room_alias_name")
        alias: str | None = None
        if alias_name:
            alias = f"#{alias_name}:{services.server_name}"
            parse_local_alias(services, alias)
            taken = await services.roomserver.get_room_id_for_alias(rs_pb.GetRoomIDForAliasRequest(alias=alias))
            if taken.room_id:
                raise errors.RoomInUse("Room alias already taken")
            creation.canonical_alias = alias
        built = await _build_new_room(services, creation)
        await services.input_events(built.events)
        if alias is not None:
            # Taken in the meantime: the room exists with a dangling
            # canonical alias, as in Synapse when creating the alias fails.
            await services.roomserver.set_room_alias(rs_pb.SetRoomAliasRequest(
                alias=alias, room_id=built.room_id, creator=device.user_id))
        if params.optional_str(body, "visibility") == "public":
            await services.database.set_room_published(built.room_id, True)
        is_direct = params.optional_bool(body, "is_direct")
        for invitee in creation.invite:
            content = await profile_content(services, invitee)
            if is_direct:
                content["is_direct"] = True
            await send_membership(services, room_id=built.room_id, sender=device.user_id, target=invitee,
                                  membership="invite", extra_content=content)
        return json_response({"room_id": built.room_id})

    client_route(blueprint, "/createRoom", create_room, ["POST"], name="create_room")
