"""GET /v1/rooms/{roomId}/hierarchy and GET /v1/room_summary/{roomIdOrAlias}.

Spec: client-server API "Spaces" (modules/spaces.md) with
data/api/client-server/space_hierarchy.yaml, and "Room summary"
(room_summary.yaml, v1.15). Both answer for rooms this server is in; remote
rooms (which would need the federation hierarchy and summary requests) are
passed over in a hierarchy and 404 as a summary.

A room is shown to a user who may see it, as in Synapse: a member (joined
or invited), or anyone when its join rule is public or knock(_restricted),
when its history is world readable, or when it is restricted and the user
is joined to one of the allowed rooms.

The hierarchy is walked breadth first from the root, children in the
spec's order (``order``, then the child event's timestamp, then the room
ID); ``from`` is an offset into that walk, tied to ``suggested_only`` and
``max_depth`` (400 M_INVALID_PARAM when they change). The summary asks for
an access token: the spec allows answering without one for open rooms, but
does not require it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.room_state import current_state_events
from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.http import json_response, query_int
from matrixlib import events as ev
from matrixlib.events import Event, StateKey

V1_PREFIXES = ("/_matrix/client/v1",)
SPACE_CHILD = "m.space.child"
AVATAR = "m.room.avatar"
MAX_HIERARCHY_LIMIT = 50
# A walk stops after this many rooms, whatever the spaces link to.
MAX_ROOMS_WALKED = 1000
OPEN_JOIN_RULES = ("public", "knock", "knock_restricted")
RESTRICTED_JOIN_RULES = ("restricted", "knock_restricted")


@dataclass
class LocalRoom:
    room_id: str
    version: str
    state: dict[StateKey, Event]
    joined_members: int

    def text(self, type: str, field: str) -> str | None:
        event = self.state.get((type, ""))
        value = event.content.get(field) if event is not None else None
        return value if isinstance(value, str) and value else None

    @property
    def join_rule(self) -> str:
        return self.text(ev.JOIN_RULES, "join_rule") or "invite"

    def allowed_room_ids(self) -> list[str]:
        event = self.state.get((ev.JOIN_RULES, ""))
        allow = event.content.get("allow") if event is not None else None
        if not isinstance(allow, list):
            return []
        return [item["room_id"] for item in allow if isinstance(item, dict)
                and item.get("type") == "m.room_membership" and isinstance(item.get("room_id"), str)]

    def children(self, suggested_only: bool) -> list[Event]:
        """The valid m.space.child events (a non-empty ``via``), in the spec's order."""
        found = [e for (type, _), e in self.state.items() if type == SPACE_CHILD
                 and isinstance(e.content.get("via"), list) and e.content["via"]
                 and (not suggested_only or e.content.get("suggested") is True)]

        def order_key(event: Event) -> tuple[int, str, int, str]:
            order = event.content.get("order")
            valid = (isinstance(order, str) and len(order) <= 50
                     and all(0x20 <= ord(c) <= 0x7E for c in order))
            return (0 if valid else 1, order if valid and isinstance(order, str) else "",
                    event.origin_server_ts, event.state_key or "")
        return sorted(found, key=order_key)

    def summary(self) -> dict[str, Any]:
        """The room's PublicRoomsChunk fields, with room_type and the rest of a room summary."""
        entry: dict[str, Any] = {
            "room_id": self.room_id,
            "num_joined_members": self.joined_members,
            "world_readable": self.text(ev.HISTORY_VISIBILITY, "history_visibility") == "world_readable",
            "guest_can_join": self.text(ev.GUEST_ACCESS, "guest_access") == "can_join",
            "join_rule": self.join_rule,
            "room_version": self.version,
        }
        for type, field, name in [(ev.NAME, "name", "name"), (ev.TOPIC, "topic", "topic"),
                                  (ev.CANONICAL_ALIAS, "alias", "canonical_alias"), (AVATAR, "url", "avatar_url"),
                                  (ev.CREATE, "type", "room_type"), (ev.ENCRYPTION, "algorithm", "encryption")]:
            value = self.text(type, field)
            if value is not None:
                entry[name] = value
        if self.join_rule in RESTRICTED_JOIN_RULES:
            entry["allowed_room_ids"] = self.allowed_room_ids()
        return entry


async def load_local_room(services: Services, room_id: str) -> LocalRoom | None:
    state = await current_state_events(services.roomserver, room_id)
    if state is None:
        return None
    joined = sum(1 for (type, _), e in state.items() if type == ev.MEMBER and e.content.get("membership") == "join")
    return LocalRoom(room_id, state[(ev.CREATE, "")].room_version.identifier, state, joined)


async def _membership(services: Services, room_id: str, user_id: str) -> str:
    found = await services.roomserver.query_membership_for_user(
        rs_pb.QueryMembershipForUserRequest(room_id=room_id, user_id=user_id))
    return found.membership


async def may_see(services: Services, room: LocalRoom, user_id: str | None, membership: str | None = None) -> bool:
    if room.join_rule in OPEN_JOIN_RULES:
        return True
    if room.text(ev.HISTORY_VISIBILITY, "history_visibility") == "world_readable":
        return True
    if user_id is None:
        return False
    if membership is None:
        membership = await _membership(services, room.room_id, user_id)
    if membership in ("join", "invite"):
        return True
    if room.join_rule in RESTRICTED_JOIN_RULES:
        for allowed in room.allowed_room_ids():
            if await _membership(services, allowed, user_id) == "join":
                return True
    return False


def _stripped_child(event: Event) -> dict[str, Any]:
    return {"type": event.type, "state_key": event.state_key, "content": dict(event.content),
            "sender": event.sender, "origin_server_ts": event.origin_server_ts}


async def walk_hierarchy(services: Services, root: LocalRoom, user_id: str, *, suggested_only: bool,
                         max_depth: int | None) -> list[dict[str, Any]]:
    """Every room of the hierarchy the user may see, in walk order."""
    rooms: list[dict[str, Any]] = []
    seen = {root.room_id}
    queue: deque[tuple[LocalRoom, int]] = deque([(root, 0)])
    while queue and len(rooms) < MAX_ROOMS_WALKED:
        room, depth = queue.popleft()
        children = room.children(suggested_only)
        rooms.append({**room.summary(), "children_state": [_stripped_child(e) for e in children]})
        if max_depth is not None and depth >= max_depth:
            continue
        for child in children:
            child_id = child.state_key or ""
            if child_id in seen:
                continue
            seen.add(child_id)
            loaded = await load_local_room(services, child_id)
            if loaded is not None and await may_see(services, loaded, user_id):
                queue.append((loaded, depth + 1))
    return rooms


def _page_token(offset: int, suggested_only: bool, max_depth: int | None) -> str:
    return f"{offset}_{int(suggested_only)}_{'' if max_depth is None else max_depth}"


def _parse_page_token(token: str, suggested_only: bool, max_depth: int | None) -> int:
    offset, _, rest = token.partition("_")
    if not offset.isdigit():
        raise errors.InvalidParam("unknown from token")
    if rest != _page_token(0, suggested_only, max_depth).partition("_")[2]:
        raise errors.InvalidParam("suggested_only and max_depth may not change while paginating")
    return int(offset)


def _bool_arg(request: Request, name: str) -> bool:
    value = request.args.get(name)
    if value in (None, "false"):
        return False
    if value == "true":
        return True
    raise errors.InvalidParam(f"{name} must be true or false")


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def hierarchy(request: Request, room_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        suggested_only = _bool_arg(request, "suggested_only")
        limit = query_int(request, "limit", MAX_HIERARCHY_LIMIT, minimum=1, maximum=MAX_HIERARCHY_LIMIT)
        max_depth = query_int(request, "max_depth", None, minimum=0)
        offset = 0
        if token := request.args.get("from"):
            offset = _parse_page_token(token, suggested_only, max_depth)
        root = await load_local_room(services, room_id)
        if root is None or not await may_see(services, root, device.user_id):
            raise errors.Forbidden(f"You may not see room {room_id}")
        rooms = await walk_hierarchy(services, root, device.user_id, suggested_only=suggested_only,
                                     max_depth=max_depth)
        assert limit is not None
        body: dict[str, Any] = {"rooms": rooms[offset:offset + limit]}
        if offset + limit < len(rooms):
            body["next_batch"] = _page_token(offset + limit, suggested_only, max_depth)
        return json_response(body)

    async def room_summary(request: Request, room_id_or_alias: str) -> HTTPResponse:
        user_id = (await services.device_for(request)).user_id
        room_id = room_id_or_alias
        if room_id_or_alias.startswith("#"):
            found = await services.roomserver.get_room_id_for_alias(
                rs_pb.GetRoomIDForAliasRequest(alias=room_id_or_alias))
            if not found.room_id:
                raise errors.NotFound(f"Unknown room alias {room_id_or_alias}")
            room_id = found.room_id
        elif not room_id_or_alias.startswith("!"):
            raise errors.InvalidParam("not a room ID or alias")
        room = await load_local_room(services, room_id)
        membership = await _membership(services, room_id, user_id) if room else None
        if room is None or not (await may_see(services, room, user_id, membership)
                                or membership == "knock"):
            raise errors.NotFound(f"Room {room_id_or_alias} is unknown or not visible to you")
        body = room.summary()
        body["membership"] = membership or "leave"
        return json_response(body)

    client_route(blueprint, "/rooms/<room_id>/hierarchy", hierarchy, ["GET"], name="space_hierarchy",
                 prefixes=V1_PREFIXES)
    client_route(blueprint, "/room_summary/<room_id_or_alias>", room_summary, ["GET"], name="room_summary",
                 prefixes=V1_PREFIXES)
