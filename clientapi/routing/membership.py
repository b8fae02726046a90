"""POST /join/{roomIdOrAlias}, /rooms/{roomId}/join, /rooms/{roomId}/invite,
/rooms/{roomId}/leave, /rooms/{roomId}/kick, /rooms/{roomId}/ban,
/rooms/{roomId}/unban, /knock/{roomIdOrAlias}.

Spec: client-server API "Room membership", data/api/client-server/joining.yaml,
inviting.yaml, leaving.yaml, kicking.yaml, banning.yaml, knocking.yaml. Rooms this
server is not in are joined and knocked on through the federation API, via
the ``via``/``server_name`` servers and a remote alias's servers; invites
of remote users and leaves of remote invites go through it too
(clientapi/internal/membership.py).
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.aliases import resolve_alias_with_servers
from clientapi.internal.guests import check_guest_can_join
from clientapi.internal.membership import (
    current_membership,
    join_local_room,
    profile_content,
    send_membership,
)
from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.http import json_response, parse_json_body
from matrixlib.ids import is_valid_user_id


def _check_room_id(room_id: str) -> None:
    if not room_id.startswith("!"):
        raise errors.InvalidParam(f"not a room ID: {room_id!r}")


def _via(request: Request) -> list[str]:
    """The servers a client names to join or knock through (``server_name``
    is the deprecated spelling of ``via``)."""
    return [*request.args.getlist("via", []), *request.args.getlist("server_name", [])]


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def join_by_id_or_alias(request: Request, room_id_or_alias: str) -> HTTPResponse:
        device = await services.device_for(request)
        services.send_limiter.check(device.user_id)
        services.join_limiter.check(device.user_id)
        body = parse_json_body(request, allow_empty=True)
        reason = params.optional_str(body, "reason")
        room_id = room_id_or_alias
        servers = _via(request)
        if room_id_or_alias.startswith("#"):
            room_id, alias_servers = await resolve_alias_with_servers(services, room_id_or_alias)
            servers += alias_servers or []
        _check_room_id(room_id)
        await check_guest_can_join(services, device, room_id)
        await join_local_room(services, room_id, device.user_id, reason, servers)
        return json_response({"room_id": room_id})

    async def join_room(request: Request, room_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        services.send_limiter.check(device.user_id)
        services.join_limiter.check(device.user_id)
        body = parse_json_body(request, allow_empty=True)
        reason = params.optional_str(body, "reason")
        _check_room_id(room_id)
        await check_guest_can_join(services, device, room_id)
        await join_local_room(services, room_id, device.user_id, reason)
        return json_response({"room_id": room_id})

    async def invite(request: Request, room_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        services.send_limiter.check(device.user_id)
        services.invite_limiter.check(device.user_id)
        body = parse_json_body(request)
        invitee = params.require_str(body, "user_id")
        reason = params.optional_str(body, "reason")
        if not is_valid_user_id(invitee):
            raise errors.InvalidParam(f"not a user ID: {invitee!r}")
        _check_room_id(room_id)
        await send_membership(services, room_id=room_id, sender=device.user_id, target=invitee,
                              membership="invite", reason=reason,
                              extra_content=await profile_content(services, invitee))
        return json_response({})

    async def leave(request: Request, room_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        services.send_limiter.check(device.user_id)
        body = parse_json_body(request, allow_empty=True)
        reason = params.optional_str(body, "reason")
        _check_room_id(room_id)
        await send_membership(services, room_id=room_id, sender=device.user_id, target=device.user_id,
                              membership="leave", reason=reason)
        return json_response({})

    def change_other(membership: str, name: str) -> None:
        """kick (leave), ban, unban (leave): another user's membership,
        authorised by the room server against the sender's power."""

        async def handler(request: Request, room_id: str) -> HTTPResponse:
            device = await services.device_for(request)
            services.send_limiter.check(device.user_id)
            body = parse_json_body(request)
            target = params.require_str(body, "user_id")
            reason = params.optional_str(body, "reason")
            if not is_valid_user_id(target):
                raise errors.InvalidParam(f"not a user ID: {target!r}")
            _check_room_id(room_id)
            if name == "unban":
                found = await current_membership(services, room_id, target)
                if found.membership != "ban":
                    raise errors.Forbidden(f"{target} is not banned")
            await send_membership(services, room_id=room_id, sender=device.user_id, target=target,
                                  membership=membership, reason=reason)
            return json_response({})

        client_route(blueprint, f"/rooms/<room_id>/{name}", handler, ["POST"], name=name)

    async def knock(request: Request, room_id_or_alias: str) -> HTTPResponse:
        device = await services.device_for(request)
        services.send_limiter.check(device.user_id)
        body = parse_json_body(request, allow_empty=True)
        reason = params.optional_str(body, "reason")
        knock_room_id = room_id_or_alias
        servers = _via(request)
        if room_id_or_alias.startswith("#"):
            knock_room_id, alias_servers = await resolve_alias_with_servers(services, room_id_or_alias)
            servers += alias_servers or []
        _check_room_id(knock_room_id)
        await send_membership(services, room_id=knock_room_id, sender=device.user_id, target=device.user_id,
                              membership="knock", reason=reason,
                              extra_content=await profile_content(services, device.user_id), server_names=servers)
        return json_response({"room_id": knock_room_id})

    client_route(blueprint, "/knock/<room_id_or_alias>", knock, ["POST"], name="knock")
    change_other("leave", "kick")
    change_other("ban", "ban")
    change_other("leave", "unban")
    client_route(blueprint, "/join/<room_id_or_alias>", join_by_id_or_alias, ["POST"], name="join_any")
    client_route(blueprint, "/rooms/<room_id>/join", join_room, ["POST"], name="join_room")
    client_route(blueprint, "/rooms/<room_id>/invite", invite, ["POST"], name="invite")
    client_route(blueprint, "/rooms/<room_id>/leave", leave, ["POST"], name="leave")
