"""Membership changes of local users in rooms this server knows."""

from __future__ import annotations

from typing import Any

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb

from clientapi.internal.services import Services
from common import errors
from common.eventbuilder import build_local_event
from matrixlib.events import MEMBER


async def current_membership(services: Services, room_id: str, user_id: str) -> rs_pb.QueryMembershipForUserResponse:
    return await services.roomserver.query_membership_for_user(
        rs_pb.QueryMembershipForUserRequest(room_id=room_id, user_id=user_id))


async def profile_content(services: Services, user_id: str) -> dict[str, Any]:
    """The displayname and avatar_url a member event of ``user_id`` carries
    (a local user's profile; nothing for unknown or remote users)."""
    try:
        profile = await services.userapi.query_profile(ua_pb.QueryProfileRequest(user_id=user_id))
    except errors.NotFound:
        return {}
    content: dict[str, Any] = {}
    if profile.display_name:
        content["displayname"] = profile.display_name
    if profile.avatar_url:
        content["avatar_url"] = profile.avatar_url
    return content


async def send_membership(services: Services, *, room_id: str, sender: str, target: str, membership: str,
                          reason: str | None = None, extra_content: dict[str, Any] | None = None) -> str:
    """Builds and inputs an m.room.member event; answers its event ID.
    NotFound when the room is unknown here (joining over federation is not
    done yet); Forbidden when the auth rules refuse it."""
    content: dict[str, Any] = dict(extra_content or {})
    content["membership"] = membership
    if reason:
        content["reason"] = reason
    event = await build_local_event(
        services.roomserver, room_id=room_id, type=MEMBER, sender=sender, content=content,
        state_key=target, server_name=services.server_name, signing_key=services.signing_key)
    await services.input_events([event])
    return event.event_id


async def join_local_room(services: Services, room_id: str, user_id: str, reason: str | None) -> None:
    """Joins ``user_id`` to a room this server is in; a user already joined
    sends nothing (as Synapse, a repeated join is not a new event)."""
    found = await current_membership(services, room_id, user_id)
    if not found.room_exists:
        raise errors.NotFound(f"No known servers to join {room_id} through")
    if found.membership == "join":
        return
    await send_membership(services, room_id=room_id, sender=user_id, target=user_id, membership="join",
                          reason=reason, extra_content=await profile_content(services, user_id))
