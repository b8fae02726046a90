"""Inbound membership handshakes of remote users in our rooms, and invites
of our users to other servers' rooms:

GET  /v1/make_join/{roomId}/{userId}?ver=...   PUT /v1|v2/send_join/{roomId}/{eventId}
GET  /v1/make_leave/{roomId}/{userId}          PUT /v1|v2/send_leave/{roomId}/{eventId}
GET  /v1/make_knock/{roomId}/{userId}?ver=...  PUT /v1/send_knock/{roomId}/{eventId}
PUT  /v1|v2/invite/{roomId}/{eventId}

Spec: server-server-api.md "Joining Rooms" (and "Restricted rooms"),
"Knocking upon a room", "Inviting to a room", "Leaving Rooms";
data/api/server-server/joins-v1.yaml, joins-v2.yaml, leaving-v1.yaml,
leaving-v2.yaml, knocks.yaml, invites-v1.yaml, invites-v2.yaml. The X-Matrix
check has run: the origin is ``request.ctx.origin``.

Templates are built from the room server's current state and checked
against the auth rules (403 when the user may not do it). A received event
must be the origin's user's own membership event with a valid ID, content
hash and signatures; we add our signature (restricted joins need it, and
v1/v2 servers expect it) and input it. The room server has the last word
(its auth checks, 403 when it refuses).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from myelin.roomserver.v1 import events_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.eventbuilder import build_local_event
from common.http import json_response, parse_json_body
from federationapi.internal.access import RoomAccess
from federationapi.internal.membership import (
    JOIN_AUTHORISED_VIA,
    NEW,
    OUTLIER,
    STRIPPED_STATE_TYPES,
    UnableToAuthoriseJoin,
    UnableToGrantJoin,
    check_membership_event,
    check_signed_pdu,
    domain_of,
    input_events,
    parse_pdu,
    raise_for_outcome,
    stripped,
)
from federationapi.keyring import KeyRing
from matrixlib import events as ev
from matrixlib.auth_rules import (
    KNOCK_RESTRICTED,
    RESTRICTED,
    AuthError,
    auth_types_for_event,
    check_auth_rules,
)
from matrixlib.events import Event, StateKey
from matrixlib.ids import is_valid_user_id
from matrixlib.power_levels import PowerLevels
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, get_room_version
from matrixlib.signing import SignatureError, sign_event
from roomserver.api import FederationRoomserverAPI

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"

# What a template leaves to the server that completes it.
_TEMPLATE_DROPPED_KEYS = ("signatures", "hashes", "unsigned", "event_id")


def _events_of(protos: Any, room_version: RoomVersion) -> list[Event]:
    return [Event.from_json(p.pdu_json, room_version, p.event_id or None) for p in protos]


def add_membership_routes(blueprint: Blueprint, keyring: KeyRing, roomserver: FederationRoomserverAPI) -> None:
    server_name = keyring.server_name
    signing_key = keyring.signing_key
    access = RoomAccess(roomserver)

    # -- helpers -----------------------------------------------------------------

    async def room_version_of(room_id: str) -> RoomVersion:
        info = await access.room_info(room_id)
        return get_room_version(info.room_version)

    def check_user_of_origin(user_id: str, origin: str) -> None:
        if not is_valid_user_id(user_id):
            raise errors.BadJSON(f"not a user ID: {user_id!r}")
        if domain_of(user_id) != origin:
            raise errors.Forbidden(f"{user_id} is not a user of {origin}")

    def check_versions(request: Request, room_version: RoomVersion) -> None:
        offered = request.args.getlist("ver") or ["1"]
        if room_version.identifier not in offered:
            raise errors.IncompatibleRoomVersion(
                f"Your homeserver does not support the features required to interact with this room "
                f"(room version {room_version.identifier})", extra={"room_version": room_version.identifier})

    async def state_for(room_id: str, room_version: RoomVersion, keys: list[StateKey]) -> dict[StateKey, Event]:
        answer = await roomserver.query_latest_events_and_state(rs_pb.QueryLatestEventsAndStateRequest(
            room_id=room_id, state_to_fetch=[events_pb2.StateKeyTuple(event_type=t, state_key=k) for t, k in keys]))
        return {e.state_tuple: e for e in _events_of(answer.state_events, room_version) if e.state_key is not None}

    async def auth_state_for(event: Event) -> dict[StateKey, Event]:
        return await state_for(event.room_id, event.room_version,
                               [(ev.CREATE, ""), *auth_types_for_event(event)])

    async def restricted_join_content(room_id: str, room_version: RoomVersion, user_id: str
                                      ) -> dict[str, Any]:
        """For a join that a restricted join rule governs: the
        ``join_authorised_via_users_server`` of one of our users who may
        invite, when the user is in one of the allowed rooms here."""
        state = await state_for(room_id, room_version,
                                [(ev.CREATE, ""), (ev.JOIN_RULES, ""), (ev.POWER_LEVELS, ""), (ev.MEMBER, user_id)])
        rules = state.get((ev.JOIN_RULES, ""))
        join_rule = rules.content.get("join_rule") if rules is not None else None
        restricted = (join_rule == RESTRICTED and room_version.restricted_join_rule) or \
            (join_rule == KNOCK_RESTRICTED and room_version.knock_restricted_join_rule)
        member = state.get((ev.MEMBER, user_id))
        if not restricted or (member is not None and member.membership in ("join", "invite")):
            return {}
        assert rules is not None
        allow = rules.content.get("allow")
        allowed_rooms: list[str] = [a["room_id"] for a in allow if isinstance(a, dict)
                                    and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)] \
            if isinstance(allow, list) else []
        unknown = 0
        satisfied = False
        for allowed_room in allowed_rooms:
            found = await roomserver.query_membership_for_user(
                rs_pb.QueryMembershipForUserRequest(room_id=allowed_room, user_id=user_id))
            if not found.room_exists:
                unknown += 1
            elif found.membership == "join":
                satisfied = True
                break
        if not satisfied:
            if unknown:
                raise UnableToAuthoriseJoin("This server cannot check the room's join conditions")
            raise errors.Forbidden(f"{user_id} meets none of the room's join conditions")
        levels = PowerLevels.from_state(state, room_version)
        members = await roomserver.query_memberships_for_room(
            rs_pb.QueryMembershipsForRoomRequest(room_id=room_id, joined_only=True))
        for member_event in _events_of(members.member_events, room_version):
            candidate = member_event.state_key or ""
            if domain_of(candidate) == server_name and levels.user_level(candidate) >= levels.invite:
                return {JOIN_AUTHORISED_VIA: candidate}
        raise UnableToGrantJoin("No user of this server may authorise the join")

    async def template(request: Request, room_id: str, user_id: str, membership: str,
                       *, with_versions: bool) -> HTTPResponse:
        origin: str = request.ctx.origin
        room_version = await room_version_of(room_id)
        if with_versions:
            check_versions(request, room_version)
        check_user_of_origin(user_id, origin)
        await access.check_acl(room_id, origin)
        if membership == "knock" and not room_version.knock_join_rule:
            raise errors.IncompatibleRoomVersion(
                f"Room version {room_version.identifier} does not support knocking",
                extra={"room_version": room_version.identifier})
        content: dict[str, Any] = {"membership": membership}
        if membership == "join":
            content.update(await restricted_join_content(room_id, room_version, user_id))
        event = await build_local_event(roomserver, room_id=room_id, type=ev.MEMBER, sender=user_id,
                                        content=content, state_key=user_id, server_name=server_name,
                                        signing_key=signing_key)
        try:
            check_auth_rules(event, await auth_state_for(event))
        except AuthError as e:
            raise errors.Forbidden(f"{user_id} may not {membership} the room: {e}") from None
        pdu = {k: v for k, v in event.pdu.items() if k not in _TEMPLATE_DROPPED_KEYS}
        # The schema asks for the resident's name; the joining server replaces it.
        pdu["origin"] = server_name
        return json_response({"room_version": room_version.identifier, "event": pdu})

    async def accept(request: Request, room_id: str, event_id: str, membership: str) -> Event:
        """The checked, countersigned event, accepted into the room."""
        origin: str = request.ctx.origin
        room_version = await room_version_of(room_id)
        event = parse_pdu(parse_json_body(request), room_version)
        check_membership_event(event, room_id=room_id, event_id=event_id, membership=membership, origin=origin)
        await access.check_acl(room_id, origin)
        authoriser = event.content.get(JOIN_AUTHORISED_VIA)
        if membership == "join" and isinstance(authoriser, str) and domain_of(authoriser) == server_name:
            # Our signature vouches for the join: the user must meet the
            # room's conditions now, whatever make_join said (or if it was
            # never asked).
            await restricted_join_content(room_id, room_version, event.sender)
        signed = Event(sign_event(event.pdu, room_version, server_name, signing_key), room_version)
        try:
            await check_signed_pdu(keyring, signed)
        except SignatureError as e:
            raise errors.Forbidden(f"The event's signatures are not valid: {e}") from None
        # No origin: as the resident, we send it on to the room's other
        # servers (the federation sender sends what has none).
        for result in await input_events(roomserver, [signed], NEW):
            raise_for_outcome(result)
        return signed

    async def join_answer(request: Request, room_id: str, event_id: str) -> dict[str, Any]:
        join = await accept(request, room_id, event_id, "join")
        room_version = join.room_version
        # The room's state before the join, and the auth chain of it and of the join.
        before = await roomserver.query_state_after_events(
            rs_pb.QueryStateAfterEventsRequest(room_id=room_id, prev_event_ids=join.prev_event_ids))
        state_pdus = [json.loads(e.pdu_json) for e in before.state_events]
        state_ids = [e.event_id for e in before.state_events]
        chain = await roomserver.query_auth_chain(
            rs_pb.QueryAuthChainRequest(event_ids=[*state_ids, join.event_id]))
        members = await roomserver.query_memberships_for_room(
            rs_pb.QueryMembershipsForRoomRequest(room_id=room_id, joined_only=True))
        servers = {server_name: None}
        for member in _events_of(members.member_events, room_version):
            servers[domain_of(member.state_key or "")] = None
        return {
            "origin": server_name,
            "state": state_pdus,
            "auth_chain": [json.loads(e.pdu_json) for e in chain.auth_chain],
            "event": join.pdu,
            "members_omitted": False,
            "servers_in_room": [s for s in servers if s],
        }

    # -- join ---------------------------------------------------------------------

    async def make_join(request: Request, room_id: str, user_id: str) -> HTTPResponse:
        return await template(request, room_id, user_id, "join", with_versions=True)

    async def send_join_v2(request: Request, room_id: str, event_id: str) -> HTTPResponse:
        return json_response(await join_answer(request, room_id, event_id))

    async def send_join_v1(request: Request, room_id: str, event_id: str) -> HTTPResponse:
        answer = await join_answer(request, room_id, event_id)
        return json_response([200, {k: answer[k] for k in ("origin", "state", "auth_chain", "event")}])

    # -- leave --------------------------------------------------------------------

    async def make_leave(request: Request, room_id: str, user_id: str) -> HTTPResponse:
        return await template(request, room_id, user_id, "leave", with_versions=False)

    async def send_leave_v2(request: Request, room_id: str, event_id: str) -> HTTPResponse:
        await accept(request, room_id, event_id, "leave")
        return json_response({})

    async def send_leave_v1(request: Request, room_id: str, event_id: str) -> HTTPResponse:
        await accept(request, room_id, event_id, "leave")
        return json_response([200, {}])

    # -- knock --------------------------------------------------------------------

    async def make_knock(request: Request, room_id: str, user_id: str) -> HTTPResponse:
        return await template(request, room_id, user_id, "knock", with_versions=True)

    async def send_knock(request: Request, room_id: str, event_id: str) -> HTTPResponse:
        knock = await accept(request, room_id, event_id, "knock")
        state = await state_for(room_id, knock.room_version, [(t, "") for t in STRIPPED_STATE_TYPES])
        return json_response({"knock_room_state": [e.pdu for e in state.values()]})

    # -- invite -------------------------------------------------------------------

    async def invite(request: Request, room_id: str, event_id: str, body: Mapping[str, Any],
                     version_id: str) -> dict[str, Any]:
        origin: str = request.ctx.origin
        if version_id not in KNOWN_ROOM_VERSIONS:
            raise errors.IncompatibleRoomVersion(f"Room version {version_id!r} is not supported here",
                                                 extra={"room_version": version_id})
        room_version = get_room_version(version_id)
        event = parse_pdu(body.get("event"), room_version)
        if event.event_id != event_id:
            raise errors.BadJSON(f"the event's ID is {event.event_id}, not {event_id}")
        if event.room_id != room_id:
            raise errors.BadJSON(f"the event is in room {event.room_id}, not {room_id}")
        if event.type != ev.MEMBER or event.membership != "invite" or not event.state_key:
            raise errors.BadJSON("the event is not an invite")
        if domain_of(event.state_key) != server_name:
            raise errors.Forbidden(f"{event.state_key} is not a user of this server")
        if domain_of(event.sender) != origin:
            raise errors.Forbidden(f"{event.sender} is not a user of {origin}")
        info = await roomserver.query_room_info(rs_pb.QueryRoomInfoRequest(room_id=room_id))
        if info.room_exists and not info.is_stub:
            if info.room_version != version_id:
                raise errors.BadJSON(f"room {room_id} has version {info.room_version}, not {version_id}")
            await access.check_acl(room_id, origin)
        room_state = body.get("invite_room_state", [])
        if not isinstance(room_state, list):
            raise errors.BadJSON("invite_room_state must be a list")
        shown = [s for s in (stripped(p) for p in room_state if isinstance(p, dict)) if s is not None]
        if room_version.hydra:
            # v12 (spec v1.16, SHOULD): the room's own create event, as a PDU
            # of the room's version: its hash is the room ID.
            creates = [p for p in room_state if isinstance(p, dict) and p.get("type") == ev.CREATE]
            if not creates:
                raise errors.MissingParam("invite_room_state must hold the room's m.room.create event")
            try:
                create_room_id = parse_pdu(creates[0], room_version).room_id
            except errors.BadJSON:
                create_room_id = None
            if create_room_id != room_id:
                raise errors.InvalidParam("invite_room_state's m.room.create event is not this room's")
        try:
            await check_signed_pdu(keyring, event)
        except SignatureError as e:
            raise errors.Forbidden(f"The invite's signatures are not valid: {e}") from None
        signed_pdu = sign_event(event.pdu, room_version, server_name, signing_key)
        # The invitee's client is shown the stripped state (the room server
        # reads it from unsigned, which no hash or signature covers).
        for_room_server = dict(signed_pdu)
        for_room_server["unsigned"] = {**event.unsigned, "invite_room_state": shown}
        for result in await input_events(roomserver, [Event(for_room_server, room_version)], OUTLIER,
                                         origin=origin):
            raise_for_outcome(result)
        return {"event": signed_pdu}

    async def invite_v2(request: Request, room_id: str, event_id: str) -> HTTPResponse:
        body = parse_json_body(request)
        version_id = body.get("room_version")
        if not isinstance(version_id, str):
            raise errors.BadJSON("room_version is required")
        return json_response(await invite(request, room_id, event_id, body, version_id))

    async def invite_v1(request: Request, room_id: str, event_id: str) -> HTTPResponse:
        # v1 carries only the event, of a room version 1 or 2 room.
        pdu = parse_json_body(request)
        unsigned = pdu.get("unsigned")
        room_state = unsigned.get("invite_room_state", []) if isinstance(unsigned, dict) else []
        answer = await invite(request, room_id, event_id, {"event": pdu, "invite_room_state": room_state}, "1")
        return json_response([200, answer])

    options: dict[str, Any] = {"unquote": True}
    routes: list[tuple[Any, str, str, str]] = [
        (make_join, "GET", f"{V1}/make_join/<room_id>/<user_id>", "make_join"),
        (send_join_v1, "PUT", f"{V1}/send_join/<room_id>/<event_id>", "send_join_v1"),
        (send_join_v2, "PUT", f"{V2}/send_join/<room_id>/<event_id>", "send_join_v2"),
        (make_leave, "GET", f"{V1}/make_leave/<room_id>/<user_id>", "make_leave"),
        (send_leave_v1, "PUT", f"{V1}/send_leave/<room_id>/<event_id>", "send_leave_v1"),
        (send_leave_v2, "PUT", f"{V2}/send_leave/<room_id>/<event_id>", "send_leave_v2"),
        (make_knock, "GET", f"{V1}/make_knock/<room_id>/<user_id>", "make_knock"),
        (send_knock, "PUT", f"{V1}/send_knock/<room_id>/<event_id>", "send_knock"),
        (invite_v1, "PUT", f"{V1}/invite/<room_id>/<event_id>", "invite_v1"),
        (invite_v2, "PUT", f"{V2}/invite/<room_id>/<event_id>", "invite_v2"),
    ]
    for handler, method, path, name in routes:
        blueprint.add_route(handler, path, methods=[method], name=name, **options)
