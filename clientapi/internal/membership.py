"""Membership changes of local users: in rooms this server is in, and,
through the federation API, in rooms it is not in (remote joins, leaves
and knocks) and of users of other servers (remote invites)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from myelin.federationapi.v1 import federationapi_pb2 as fed_pb
from myelin.roomserver.v1 import events_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb

from clientapi.internal.services import Services
from common import errors
from common.eventbuilder import build_local_event
from matrixlib import events as ev
from matrixlib.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from matrixlib.events import MEMBER, Event, StateKey
from matrixlib.room_versions import get_room_version
from roomserver.api import StateQueryAPI

_T = TypeVar("_T")

# The state an invitee on another server is sent with the invite (full PDUs,
# spec v1.16: the create event is required), besides the inviter's membership.
INVITE_STATE_TYPES = (ev.CREATE, ev.JOIN_RULES, ev.NAME, "m.room.avatar", ev.TOPIC, ev.CANONICAL_ALIAS,
                      ev.ENCRYPTION)


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


def _domain(identifier: str) -> str:
    return identifier.partition(":")[2]


async def send_membership(services: Services, *, room_id: str, sender: str, target: str, membership: str,
                          reason: str | None = None, extra_content: dict[str, Any] | None = None,
                          server_names: Sequence[str] = (), state_source: StateQueryAPI | None = None) -> str:
    """Builds and inputs an m.room.member event; answers its event ID.
    NotFound when the room is unknown here; Forbidden when the auth rules
    refuse it. Through the federation API: an invite of another server's
    user (that server signs it first), a leave of a room this server has
    only an invite or knock for, a knock on a room this server is not in
    (``server_names`` to knock through). ``state_source`` answers the
    build's room state query (a join's, answered already)."""
    content: dict[str, Any] = dict(extra_content or {})
    content["membership"] = membership
    if reason:
        content["reason"] = reason
    if services.federation is not None and sender == target and membership in ("leave", "knock"):
        info = await _room_info(services, room_id)
        joined_servers = list(info.joined_servers) if info.room_exists and not info.is_stub else []
        # A room nobody is joined to any more is left to the local path.
        if not info.room_exists or info.is_stub or (joined_servers and not info.server_joined):
            if membership == "knock":
                knocked = await services.federation.perform_knock(fed_pb.PerformKnockRequest(
                    room_id=room_id, user_id=sender, server_names=[*server_names, *joined_servers],
                    reason=reason or ""))
                return knocked.event_id
            if info.room_exists:
                # Rejecting an invite (or retracting a knock) to a room no local user is in.
                left = await services.federation.perform_leave(fed_pb.PerformLeaveRequest(
                    room_id=room_id, user_id=sender, server_names=[*server_names, *joined_servers],
                    reason=reason or ""))
                return left.event_id
    event = await build_local_event(
        state_source or services.roomserver, room_id=room_id, type=MEMBER, sender=sender, content=content,
        state_key=target, server_name=services.server_name, signing_key=services.signing_key)
    if membership == "invite" and _domain(target) != services.server_name and services.federation is not None:
        event = await _remote_invite(services, event)
    await services.input_events([event])
    return event.event_id


async def _room_info(services: Services, room_id: str) -> rs_pb.QueryRoomInfoResponse:
    """The room's info with ``server_joined`` for this server, and the
    joined servers only when this server has no joined member (to join or
    leave through them): a local user's join or leave in a big room never
    lists the servers of all its members."""
    info = await services.roomserver.query_room_info(
        rs_pb.QueryRoomInfoRequest(room_id=room_id, joined_server_name=services.server_name))
    if info.room_exists and not info.is_stub and not info.server_joined:
        info = await services.roomserver.query_room_info(rs_pb.QueryRoomInfoRequest(
            room_id=room_id, include_joined_servers=True, joined_server_name=services.server_name))
    return info


async def _current_state(services: Services, room_id: str, keys: Sequence[StateKey]) -> list[Event]:
    answer = await services.roomserver.query_latest_events_and_state(rs_pb.QueryLatestEventsAndStateRequest(
        room_id=room_id, state_to_fetch=[events_pb2.StateKeyTuple(event_type=t, state_key=k) for t, k in keys]))
    version = get_room_version(answer.room_version)
    return [Event.from_json(e.pdu_json, version, e.event_id or None) for e in answer.state_events]


async def _remote_invite(services: Services, invite: Event) -> Event:
    """The invite as the invitee's server signed it. It is checked against
    the room's current state first, so that nothing reaches the other
    server that this one would refuse."""
    assert services.federation is not None
    auth_state = {e.state_tuple: e for e in await _current_state(
        services, invite.room_id, [(ev.CREATE, ""), *auth_types_for_event(invite)]) if e.state_key is not None}
    try:
        check_auth_rules(invite, auth_state)
    except AuthError as e:
        raise errors.Forbidden(f"The invite is not allowed: {e}") from None
    shown = await _current_state(services, invite.room_id,
                                 [*((t, "") for t in INVITE_STATE_TYPES), (MEMBER, invite.sender)])
    answer = await services.federation.perform_invite(fed_pb.PerformInviteRequest(
        event_json=invite.to_json(), room_version=invite.room_version.identifier,
        invite_room_state_json=[e.to_json() for e in shown]))
    return Event.from_json(answer.event_json, invite.room_version)


async def _inviters_server(services: Services, membership: rs_pb.QueryMembershipForUserResponse) -> list[str]:
    if membership.membership != "invite" or not membership.event_id:
        return []
    found = await services.roomserver.query_events_by_id(
        rs_pb.QueryEventsByIDRequest(event_ids=[membership.event_id], include_unaccepted=True))
    senders = [json.loads(e.pdu_json).get("sender") for e in found.events]
    return [_domain(s) for s in senders if isinstance(s, str)]


def _member_state_request(room_id: str, user_id: str, content: dict[str, Any]
                          ) -> rs_pb.QueryLatestEventsAndStateRequest | None:
    """The room state query that building ``user_id``'s member event with
    ``content`` makes (common/eventbuilder.py: the auth types of the event;
    a profile's displayname or avatar changes none of them). None when no
    such event can be made (the build reports why)."""
    try:
        provisional = Event({"type": MEMBER, "room_id": room_id, "sender": user_id, "state_key": user_id,
                             "content": content}, get_room_version("10"))
    except ValueError:
        return None
    return rs_pb.QueryLatestEventsAndStateRequest(
        room_id=room_id, state_to_fetch=[events_pb2.StateKeyTuple(event_type=t, state_key=k)
                                         for t, k in auth_types_for_event(provisional)])


class _AnsweredState:
    """The room server, but for one QueryLatestEventsAndState request that
    was answered already (a join asks it together with whether this server
    is in the room): that request is answered with it, once; anything else
    is asked of the room server."""

    def __init__(self, roomserver: StateQueryAPI, request: rs_pb.QueryLatestEventsAndStateRequest,
                 answer: rs_pb.QueryLatestEventsAndStateResponse) -> None:
        self._roomserver = roomserver
        self._request: rs_pb.QueryLatestEventsAndStateRequest | None = request
        self._answer = answer

    async def query_latest_events_and_state(
            self, req: rs_pb.QueryLatestEventsAndStateRequest) -> rs_pb.QueryLatestEventsAndStateResponse:
        if req == self._request:
            self._request = None
            return self._answer
        return await self._roomserver.query_latest_events_and_state(req)

    async def query_state_after_events(
            self, req: rs_pb.QueryStateAfterEventsRequest) -> rs_pb.QueryStateAfterEventsResponse:
        return await self._roomserver.query_state_after_events(req)

    async def query_events_by_id(self, req: rs_pb.QueryEventsByIDRequest) -> rs_pb.QueryEventsByIDResponse:
        return await self._roomserver.query_events_by_id(req)

    async def query_room_info(self, req: rs_pb.QueryRoomInfoRequest) -> rs_pb.QueryRoomInfoResponse:
        return await self._roomserver.query_room_info(req)


def _ahead(awaitable: Awaitable[_T]) -> asyncio.Future[_T]:
    """Starts ``awaitable`` now; its failure is retrieved even if nobody
    awaits it (the answer turned out not to be needed)."""
    future = asyncio.ensure_future(awaitable)
    future.add_done_callback(lambda done: None if done.cancelled() else done.exception())
    return future


def _current_membership_in(answer: rs_pb.QueryLatestEventsAndStateResponse, user_id: str) -> str | None:
    """The user's membership in the state of ``answer``, if there."""
    for proto in answer.state_events:
        if MEMBER.encode() not in proto.pdu_json:
            continue  # not a member event: not parsed (the create, power levels, join rules)
        pdu = json.loads(proto.pdu_json)
        content = pdu.get("content")
        if pdu.get("type") == MEMBER and pdu.get("state_key") == user_id and isinstance(content, dict):
            membership = content.get("membership")
            return membership if isinstance(membership, str) else None
    return None


async def join_local_room(services: Services, room_id: str, user_id: str, reason: str | None,
                          server_names: Sequence[str] = ()) -> None:
    """Joins ``user_id`` to a room; a user already joined sends nothing (as
    Synapse, a repeated join is not a new event). When no local user is in
    the room (unknown room, only an invite or knock here, or everyone local
    left) the federation API joins through ``server_names``, the inviter's
    server, the room ID's server and the servers last known in the room,
    in that order: 404 when none could be reached, 403 when refused."""
    # A join to a room this server is in makes one room server query: the
    # room state the join event is built on, with whether this server has a
    # joined member (then the current state holds the user's membership:
    # the membership table follows it). The profile is asked for meanwhile.
    profile = _ahead(profile_content(services, user_id))
    try:
        state_request = _member_state_request(
            room_id, user_id, {"membership": "join", **({"reason": reason} if reason else {})})
        if state_request is not None:
            asked = rs_pb.QueryLatestEventsAndStateRequest()
            asked.CopyFrom(state_request)
            asked.joined_server_name = services.server_name
            answer = await services.roomserver.query_latest_events_and_state(asked)
            if answer.room_exists and answer.server_joined:
                if _current_membership_in(answer, user_id) == "join":
                    return
                await send_membership(services, room_id=room_id, sender=user_id, target=user_id,
                                      membership="join", reason=reason, extra_content=dict(await profile),
                                      state_source=_AnsweredState(services.roomserver, state_request, answer))
                return
        await _join_elsewhere(services, room_id, user_id, reason, server_names, profile)
    finally:
        profile.cancel()


async def _join_elsewhere(services: Services, room_id: str, user_id: str, reason: str | None,
                          server_names: Sequence[str], profile: Awaitable[dict[str, Any]]) -> None:
    """A join when this server is not (or not known to be) in the room:
    through the federation API, unless the room's last state here still
    lets a local join be built (no server to ask, or no federation)."""
    found = await services.roomserver.query_membership_for_user(rs_pb.QueryMembershipForUserRequest(
        room_id=room_id, user_id=user_id, joined_server_name=services.server_name))
    if found.membership == "join":
        return
    joined_servers: list[str] = []
    inviters = [s for s in await _inviters_server(services, found) if s != services.server_name]
    remote = not found.room_exists
    if found.room_exists and not found.server_joined:
        info = await _room_info(services, room_id)
        if not info.is_stub:
            joined_servers = list(info.joined_servers)
        remote = info.is_stub or (services.federation is not None and not info.server_joined
                                  and bool(joined_servers or inviters))
    content = dict(await profile)
    if not remote:
        await send_membership(services, room_id=room_id, sender=user_id, target=user_id, membership="join",
                              reason=reason, extra_content=content)
        return
    if services.federation is None:
        raise errors.NotFound(f"No known servers to join {room_id} through")
    if reason:
        content["reason"] = reason
    servers = [*server_names, *inviters, _domain(room_id), *joined_servers]
    await services.federation.perform_join(fed_pb.PerformJoinRequest(
        room_id=room_id, user_id=user_id, server_names=[s for s in dict.fromkeys(servers) if s],
        content_json=json.dumps(content).encode()))
