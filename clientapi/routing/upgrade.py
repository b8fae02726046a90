"""POST /rooms/{roomId}/upgrade.

Spec: client-server API "Room Upgrades" (modules/room_upgrades.md) and
data/api/client-server/room_upgrades.yaml. Where the spec leaves room, as
Synapse does:

- the new room is created with the old room's power levels, the upgrader
  raised so that every copied state event is allowed, then the old levels
  are restored (in room version 12 and later the upgrader is a creator, so
  nothing is raised, and the creators are taken out of ``users``);
- besides the spec's list, the canonical alias and the bans are copied, and
  the room's local aliases and its room directory entry move to the new
  room (the old room's canonical alias is cleared);
- after the tombstone, the old room's ``events_default`` and ``invite`` are
  raised to the greater of 50 and ``users_default + 1`` if the upgrader may
  change the power levels (otherwise that step is skipped).

Everything that can be refused (an unknown version, no power to send the
tombstone) is checked before anything is input.
"""

from __future__ import annotations

import logging
from typing import Any

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.membership import profile_content
from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.eventbuilder import (
    GUEST_ACCESS,
    PRESET_PUBLIC,
    InitialStateEvent,
    RoomCreationRequest,
    build_local_event,
    build_room_creation_events,
)
from common.http import json_response, parse_json_body
from matrixlib import events as ev
from matrixlib.auth_rules import AuthError, check_auth_rules
from matrixlib.events import Event, StateKey
from matrixlib.ids import is_valid_user_id
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, get_room_version

logger = logging.getLogger(__name__)

# The state copied as it is (the spec's recommendation, and what Synapse adds).
COPIED_STATE_TYPES = (
    ev.SERVER_ACL, ev.ENCRYPTION, ev.NAME, "m.room.avatar", ev.TOPIC, GUEST_ACCESS,
    ev.HISTORY_VISIBILITY, ev.JOIN_RULES, ev.CANONICAL_ALIAS,
)
# The least power the old room then asks for to speak or invite.
RESTRICTED_LEVEL = 50


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _raised_power_levels(levels: dict[str, Any], upgrader: str) -> dict[str, Any]:
    """``levels`` with the upgrader at the highest level any of them names,
    so that copying the state cannot be refused."""
    needed = [100, _int(levels.get("state_default"), 50), _int(levels.get("ban"), 50),
              _int(levels.get("users_default"), 0)]
    for key in ("events", "users"):
        mapping = levels.get(key)
        if isinstance(mapping, dict):
            needed += [_int(v, 0) for v in mapping.values()]
    users = dict(levels.get("users") or {})
    users[upgrader] = max(needed)
    return {**levels, "users": users}


def _parse_additional_creators(body: dict[str, Any], upgrader: str) -> list[str]:
    creators = params.optional_str_list(body, "additional_creators")
    for user_id in creators:
        if not is_valid_user_id(user_id):
            raise errors.InvalidParam(f"additional_creators: not a user ID: {user_id!r}")
    return [u for u in dict.fromkeys(creators) if u != upgrader]


class _OldRoom:
    """The old room's current state, as the upgrade reads it."""

    def __init__(self, room_id: str, version: RoomVersion, state: dict[StateKey, Event],
                 latest_event_ids: list[str]) -> None:
        self.room_id = room_id
        self.version = version
        self.state = state
        self.latest_event_ids = latest_event_ids

    def content(self, type: str, state_key: str = "") -> dict[str, Any] | None:
        found = self.state.get((type, state_key))
        return dict(found.content) if found is not None else None


async def _load_old_room(services: Services, room_id: str) -> _OldRoom:
    answer = await services.roomserver.query_latest_events_and_state(
        rs_pb.QueryLatestEventsAndStateRequest(room_id=room_id))
    if not answer.room_exists:
        raise errors.NotFound(f"Unknown room {room_id}")
    version = get_room_version(answer.room_version)
    state: dict[StateKey, Event] = {}
    for proto in answer.state_events:
        event = Event.from_json(proto.pdu_json, version, proto.event_id or None)
        if event.state_key is not None:
            state[event.state_tuple] = event
    return _OldRoom(room_id, version, state, list(answer.latest_event_ids))


def _creation_request(old: _OldRoom, upgrader: str, new_version: RoomVersion,
                      additional_creators: list[str]) -> tuple[RoomCreationRequest, dict[str, Any] | None]:
    """The new room's creation, and the power levels to restore after it
    (None when the creation's levels are already the final ones)."""
    creation_content: dict[str, Any] = {"predecessor": {"room_id": old.room_id}}
    if not new_version.hydra and old.latest_event_ids:
        # The spec: the last known event of the old room (optional from v12).
        creation_content["predecessor"]["event_id"] = old.latest_event_ids[0]
    old_create = old.content(ev.CREATE) or {}
    if "type" in old_create:
        creation_content["type"] = old_create["type"]
    if "m.federate" in old_create:
        creation_content["m.federate"] = old_create["m.federate"]
    if new_version.hydra and additional_creators:
        creation_content["additional_creators"] = additional_creators

    initial = [InitialStateEvent(type=t, state_key="", content=content)
               for t in COPIED_STATE_TYPES if (content := old.content(t)) is not None]
    initial += [InitialStateEvent(type=ev.MEMBER, state_key=key, content={"membership": "ban"})
                for (type, key), event in old.state.items()
                if type == ev.MEMBER and event.content.get("membership") == "ban" and key != upgrader]

    final_levels = old.content(ev.POWER_LEVELS)
    restore: dict[str, Any] | None = None
    if final_levels is not None:
        if new_version.hydra:
            # Creators have infinite power and may not be listed.
            users = {u: level for u, level in dict(final_levels.get("users") or {}).items()
                     if u != upgrader and u not in additional_creators}
            final_levels = {**final_levels, "users": users}
            first_levels = final_levels
        else:
            first_levels = _raised_power_levels(final_levels, upgrader)
            if first_levels != final_levels:
                restore = final_levels
        initial.append(InitialStateEvent(type=ev.POWER_LEVELS, state_key="", content=first_levels))
    request = RoomCreationRequest(
        creator=upgrader, room_version=new_version,
        # The old room's join rules and history visibility are copied; a
        # public preset adds no guest access the old room did not have.
        preset=PRESET_PUBLIC, initial_state=initial, creation_content=creation_content)
    return request, restore


def _restricted_power_levels(levels: dict[str, Any]) -> dict[str, Any] | None:
    """The old room's levels with speaking and inviting restricted, or None
    when they already are."""
    wanted = max(RESTRICTED_LEVEL, _int(levels.get("users_default"), 0) + 1)
    changed = dict(levels)
    for key, default in (("events_default", 0), ("invite", 0)):
        if _int(levels.get(key), default) < wanted:
            changed[key] = wanted
    return changed if changed != levels else None


async def _move_aliases(services: Services, old: _OldRoom, new_room_id: str, upgrader: str) -> None:
    answer = await services.roomserver.get_aliases_for_room(rs_pb.GetAliasesForRoomRequest(room_id=old.room_id))
    for alias in answer.aliases:
        removed = await services.roomserver.remove_room_alias(rs_pb.RemoveRoomAliasRequest(alias=alias))
        await services.roomserver.set_room_alias(rs_pb.SetRoomAliasRequest(
            alias=alias, room_id=new_room_id, creator=removed.creator or upgrader))


async def upgrade_room(services: Services, room_id: str, upgrader: str, new_version: RoomVersion,
                       additional_creators: list[str]) -> str:
    """Upgrades ``room_id``; answers the replacement room's ID."""
    old = await _load_old_room(services, room_id)
    request, restore = _creation_request(old, upgrader, new_version, additional_creators)
    request.creator_join_content = await profile_content(services, upgrader)
    creation = build_room_creation_events(request, server_name=services.server_name,
                                          signing_key=services.signing_key)
    new_room_id = creation.room_id
    tombstone = await build_local_event(
        services.roomserver, room_id=room_id, type=ev.TOMBSTONE, sender=upgrader, state_key="",
        content={"body": "This room has been replaced", "replacement_room": new_room_id},
        server_name=services.server_name, signing_key=services.signing_key)
    try:
        check_auth_rules(tombstone, old.state)
    except AuthError as e:
        raise errors.Forbidden(f"You may not upgrade this room: {e}") from None

    await services.input_events(creation.events)
    if restore is not None:
        await services.input_events([await build_local_event(
            services.roomserver, room_id=new_room_id, type=ev.POWER_LEVELS, sender=upgrader, state_key="",
            content=restore, server_name=services.server_name, signing_key=services.signing_key)])
    await _move_aliases(services, old, new_room_id, upgrader)
    if await services.database.is_room_published(room_id):
        await services.database.set_room_published(new_room_id, True)
        await services.database.set_room_published(room_id, False)
    await services.input_events([tombstone])

    # Best effort from here: the upgrade has happened.
    if old.content(ev.CANONICAL_ALIAS):
        await _send_if_allowed(services, room_id, upgrader, ev.CANONICAL_ALIAS, {})
    old_levels = old.content(ev.POWER_LEVELS)
    if old_levels is not None and (restricted := _restricted_power_levels(old_levels)) is not None:
        await _send_if_allowed(services, room_id, upgrader, ev.POWER_LEVELS, restricted)
    return new_room_id


async def _send_if_allowed(services: Services, room_id: str, sender: str, type: str,
                           content: dict[str, Any]) -> None:
    try:
        event = await build_local_event(
            services.roomserver, room_id=room_id, type=type, sender=sender, state_key="", content=content,
            server_name=services.server_name, signing_key=services.signing_key)
        await services.input_events([event])
    except errors.Forbidden as e:
        logger.info("after upgrading %s, %s could not send %s: %s", room_id, sender, type, e)


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def upgrade(request: Request, room_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        services.send_limiter.check(device.user_id)
        body = parse_json_body(request)
        version_id = params.require_str(body, "new_version")
        new_version = KNOWN_ROOM_VERSIONS.get(version_id)
        if new_version is None:
            raise errors.UnsupportedRoomVersion(f"This server does not support room version {version_id}")
        additional_creators = _parse_additional_creators(body, device.user_id)
        new_room_id = await upgrade_room(services, room_id, device.user_id, new_version, additional_creators)
        return json_response({"replacement_room": new_room_id})

    client_route(blueprint, "/rooms/<room_id>/upgrade", upgrade, ["POST"], name="upgrade_room")
