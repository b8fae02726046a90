"""GET /rooms/{roomId}/messages, /context/{eventId}, /members and /joined_members
(data/api/client-server/message_pagination.yaml, event_context.yaml, members.yaml)."""

from __future__ import annotations

import json

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response, query_int
from syncapi.filters import EventFilter, parse_event_filter
from syncapi.internal.rooms import MAX_MESSAGES_LIMIT, RoomReads
from syncapi.routing.auth import CLIENT_PREFIXES, authenticate
from userapi.api import AuthenticationAPI

MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban")


def _event_filter(value: str | None) -> EventFilter:
    if not value:
        return EventFilter()
    try:
        parsed = json.loads(value)
    except ValueError:
        raise errors.NotJSON("filter is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise errors.BadJSON("filter must be a JSON object")
    return parse_event_filter(parsed)


def _membership_param(request: Request, name: str) -> str | None:
    value: str | None = request.args.get(name)
    if value is not None and value not in MEMBERSHIPS:
        raise errors.InvalidParam(f"{name} must be one of {', '.join(MEMBERSHIPS)}")
    return value


def register(blueprint: Blueprint, reads: RoomReads, userapi: AuthenticationAPI) -> None:
    async def messages(request: Request, room_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        direction = request.args.get("dir", "f")
        if direction not in ("b", "f"):
            raise errors.InvalidParam("dir must be 'b' or 'f'")
        limit = query_int(request, "limit", 10, minimum=0, maximum=MAX_MESSAGES_LIMIT) or 0
        body = await reads.messages(
            requester, room_id, from_token=request.args.get("from") or None,
            to_token=request.args.get("to") or None, backwards=direction == "b", limit=limit,
            event_filter=_event_filter(request.args.get("filter")))
        return json_response(body)

    async def members(request: Request, room_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        body = await reads.members(
            requester, room_id, at=request.args.get("at") or None,
            membership=_membership_param(request, "membership"),
            not_membership=_membership_param(request, "not_membership"))
        return json_response(body)

    async def joined_members(request: Request, room_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        return json_response(await reads.joined_members(requester, room_id))

    async def context(request: Request, room_id: str, event_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        limit = query_int(request, "limit", 10, minimum=0, maximum=MAX_MESSAGES_LIMIT) or 0
        body = await reads.context(requester, room_id, event_id, limit=limit,
                                   event_filter=_event_filter(request.args.get("filter")))
        return json_response(body)

    for prefix in CLIENT_PREFIXES:
        suffix = prefix.replace("/", "_")
        blueprint.add_route(messages, f"{prefix}/rooms/<room_id>/messages", methods=["GET"],
                            unquote=True, name=f"messages{suffix}")
        blueprint.add_route(members, f"{prefix}/rooms/<room_id>/members", methods=["GET"],
                            unquote=True, name=f"members{suffix}")
        blueprint.add_route(joined_members, f"{prefix}/rooms/<room_id>/joined_members",
                            methods=["GET"], unquote=True, name=f"joined_members{suffix}")
        blueprint.add_route(context, f"{prefix}/rooms/<room_id>/context/<event_id>", methods=["GET"],
                            unquote=True, name=f"context{suffix}")
