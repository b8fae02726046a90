"""GET /profile/{userId}[/displayname|/avatar_url] and
PUT/DELETE /profile/{userId}/displayname|avatar_url.

Spec: data/api/client-server/profile.yaml. A remote user's profile is asked
of their server through the federation API (404 M_NOT_FOUND when that
server does not know them, cannot be reached, or there is no federation
API). A change
is also sent, as Synapse does, as a new m.room.member event in every room
the user has joined, so the rooms show the new name.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from myelin.federationapi.v1 import federationapi_pb2 as fed_pb
from myelin.roomserver.v1 import events_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.membership import send_membership
from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.guest_access import GuestAccessForbidden
from common.http import json_response, parse_json_body
from matrixlib.events import MEMBER, Event
from matrixlib.ids import InvalidIdentifierError, UserID
from matrixlib.room_versions import get_room_version

logger = logging.getLogger(__name__)

# Synapse's limits.
MAX_DISPLAYNAME_LENGTH = 256
MAX_AVATAR_URL_LENGTH = 1000

FIELDS = {"displayname": ("display_name", MAX_DISPLAYNAME_LENGTH),
          "avatar_url": ("avatar_url", MAX_AVATAR_URL_LENGTH)}


def _profile_json(profile: ua_pb.Profile) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if profile.display_name:
        out["displayname"] = profile.display_name
    if profile.avatar_url:
        out["avatar_url"] = profile.avatar_url
    return out


async def _update_member_events(services: Services, user_id: str, profile: ua_pb.Profile) -> None:
    """A new member event, with the new profile, in each joined room."""
    rooms = await services.roomserver.query_rooms_for_user(
        rs_pb.QueryRoomsForUserRequest(user_id=user_id, membership="join"))
    for room_id in rooms.room_ids:
        try:
            answer = await services.roomserver.query_latest_events_and_state(rs_pb.QueryLatestEventsAndStateRequest(
                room_id=room_id, state_to_fetch=[events_pb2.StateKeyTuple(event_type=MEMBER, state_key=user_id)]))
            content: dict[str, Any] = {}
            for proto in answer.state_events:
                member = Event.from_json(proto.pdu_json, get_room_version(answer.room_version),
                                         proto.event_id or None)
                if member.state_key == user_id:
                    content = dict(member.content)
            if content.get("membership") != "join":
                continue
            content.pop("displayname", None)
            content.pop("avatar_url", None)
            content.pop("reason", None)
            content.update(_profile_json(profile))
            await send_membership(services, room_id=room_id, sender=user_id, target=user_id,
                                  membership="join", extra_content=content)
        except errors.MatrixError as e:
            # One room refusing (e.g. a power level on member events) must
            # not stop the others or fail the profile change.
            logger.info("profile change not sent to %s: %s", room_id, e)


async def query_profile(services: Services, user_id: str, field: str = "") -> dict[str, Any]:
    """The profile of a local or remote user (only ``field`` when given)."""
    try:
        server_name = UserID.parse(user_id).server_name
    except InvalidIdentifierError:
        raise errors.InvalidParam(f"{user_id!r} is not a valid user ID") from None
    if server_name == services.server_name:
        profile = await services.userapi.query_profile(ua_pb.QueryProfileRequest(user_id=user_id))
        found = _profile_json(profile)
    else:
        if services.federation is None:
            raise errors.NotFound("Profile was not found (this server does not federate)")
        remote = await services.federation.query_profile(fed_pb.QueryProfileRequest(user_id=user_id, field=field))
        loaded = json.loads(remote.profile_json or b"{}")
        found = {k: v for k, v in loaded.items() if k in FIELDS and isinstance(v, str)}
    return {k: v for k, v in found.items() if not field or k == field}


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def get_profile(request: Request, user_id: str) -> HTTPResponse:
        return json_response(await query_profile(services, user_id))

    async def get_field(request: Request, user_id: str, field: str) -> HTTPResponse:
        if field not in FIELDS:
            raise errors.Unrecognized("Unrecognized request")
        return json_response(await query_profile(services, user_id, field))

    async def put_field(request: Request, user_id: str, field: str) -> HTTPResponse:
        if field not in FIELDS:
            raise errors.Unrecognized("Unrecognized request")
        device = await services.device_for(request)
        if device.user_id != user_id:
            raise errors.Forbidden("You may only change your own profile")
        if field != "displayname" and device.is_guest:
            raise GuestAccessForbidden("Guests may change only their display name")
        body = parse_json_body(request)
        value = params.optional_str(body, field)
        proto_field, limit = FIELDS[field]
        if value is None:
            raise errors.MissingParam(f"Missing parameter: {field}")
        if len(value) > limit:
            raise errors.InvalidParam(f"{field} is too long (at most {limit} characters)")
        services.send_limiter.check(device.user_id)
        profile = await services.userapi.perform_profile_update(
            ua_pb.PerformProfileUpdateRequest(user_id=user_id, **{proto_field: value}))
        await _update_member_events(services, user_id, profile)
        return json_response({})

    async def delete_field(request: Request, user_id: str, field: str) -> HTTPResponse:
        """DELETE /profile/{userId}/{keyName} (v1.16): the field is removed."""
        if field not in FIELDS:
            raise errors.Unrecognized("Unrecognized request")
        device = await services.device_for(request)
        if device.user_id != user_id:
            raise errors.Forbidden("You may only change your own profile")
        if field != "displayname" and device.is_guest:
            raise GuestAccessForbidden("Guests may change only their display name")
        services.send_limiter.check(device.user_id)
        proto_field, _ = FIELDS[field]
        profile = await services.userapi.perform_profile_update(
            ua_pb.PerformProfileUpdateRequest(user_id=user_id, **{proto_field: ""}))
        await _update_member_events(services, user_id, profile)
        return json_response({})

    client_route(blueprint, "/profile/<user_id>", get_profile, ["GET"], name="get_profile")
    client_route(blueprint, "/profile/<user_id>/<field>", get_field, ["GET"], name="get_profile_field")
    client_route(blueprint, "/profile/<user_id>/<field>", put_field, ["PUT"], name="put_profile_field")
    client_route(blueprint, "/profile/<user_id>/<field>", delete_field, ["DELETE"], name="delete_profile_field")
