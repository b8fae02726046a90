"""GET /rooms/{roomId}/event/{eventId} (rooms.yaml), /relations/{eventId}[/{relType}[/{eventType}]]
(relations.yaml), /threads (threads_list.yaml) and /timestamp_to_event
(room_event_by_timestamp.yaml)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response, query_int
from syncapi.internal.relations import (
    DEFAULT_RELATIONS_LIMIT,
    DEFAULT_THREADS_LIMIT,
    MAX_RELATIONS_LIMIT,
    MAX_THREADS_LIMIT,
    RelationReads,
)
from syncapi.routing.auth import CLIENT_PREFIXES, authenticate
from userapi.api import AuthenticationAPI

V1_PREFIX = "/_matrix/client/v1"


def _direction(request: Request, default: str) -> bool:
    """Whether ``dir`` asks for backwards."""
    direction: str = request.args.get("dir", default)
    if direction not in ("b", "f"):
        raise errors.InvalidParam("dir must be 'b' or 'f'")
    return direction == "b"


def _boolean(request: Request, name: str) -> bool:
    value: str = request.args.get(name, "false")
    if value not in ("true", "false"):
        raise errors.InvalidParam(f"{name} must be true or false")
    return value == "true"


def register(blueprint: Blueprint, reads: RelationReads, userapi: AuthenticationAPI) -> None:
    async def event(request: Request, room_id: str, event_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        return json_response(await reads.event(requester, room_id, event_id))

    async def relations(request: Request, room_id: str, event_id: str, rel_type: str | None = None,
                        event_type: str | None = None) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        backwards = _direction(request, "b")
        limit = query_int(request, "limit", DEFAULT_RELATIONS_LIMIT, minimum=1,
                          maximum=MAX_RELATIONS_LIMIT) or DEFAULT_RELATIONS_LIMIT
        body = await reads.relations(
            requester, room_id, event_id, rel_type=rel_type, event_type=event_type,
            from_token=request.args.get("from") or None, to_token=request.args.get("to") or None,
            backwards=backwards, limit=limit, recurse=_boolean(request, "recurse"))
        return json_response(body)

    async def relations_by_type(request: Request, room_id: str, event_id: str,
                                rel_type: str) -> HTTPResponse:
        return await relations(request, room_id, event_id, rel_type)

    async def relations_by_type_and_event_type(request: Request, room_id: str, event_id: str,
                                               rel_type: str, event_type: str) -> HTTPResponse:
        return await relations(request, room_id, event_id, rel_type, event_type)

    async def threads(request: Request, room_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        include = request.args.get("include", "all")
        if include not in ("all", "participated"):
            raise errors.InvalidParam("include must be 'all' or 'participated'")
        limit = query_int(request, "limit", DEFAULT_THREADS_LIMIT, minimum=1,
                          maximum=MAX_THREADS_LIMIT) or DEFAULT_THREADS_LIMIT
        body = await reads.threads(requester, room_id, participated=include == "participated",
                                   from_token=request.args.get("from") or None, limit=limit)
        return json_response(body)

    async def timestamp_to_event(request: Request, room_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        if request.args.get("ts") is None:
            raise errors.MissingParam("ts is required")
        ts = query_int(request, "ts", minimum=0)
        if request.args.get("dir") is None:
            raise errors.MissingParam("dir is required")
        backwards = _direction(request, "f")
        assert ts is not None
        return json_response(await reads.timestamp_to_event(requester, room_id, ts, backwards=backwards))

    for prefix in CLIENT_PREFIXES:
        suffix = prefix.replace("/", "_")
        blueprint.add_route(event, f"{prefix}/rooms/<room_id>/event/<event_id>", methods=["GET"],
                            unquote=True, name=f"room_event{suffix}")
    suffix = V1_PREFIX.replace("/", "_")
    base = f"{V1_PREFIX}/rooms/<room_id>"
    blueprint.add_route(relations, f"{base}/relations/<event_id>", methods=["GET"], unquote=True,
                        name=f"relations{suffix}")
    blueprint.add_route(relations_by_type, f"{base}/relations/<event_id>/<rel_type>", methods=["GET"],
                        unquote=True, name=f"relations_rel_type{suffix}")
    blueprint.add_route(relations_by_type_and_event_type,
                        f"{base}/relations/<event_id>/<rel_type>/<event_type>", methods=["GET"],
                        unquote=True, name=f"relations_event_type{suffix}")
    blueprint.add_route(threads, f"{base}/threads", methods=["GET"], unquote=True, name=f"threads{suffix}")
    blueprint.add_route(timestamp_to_event, f"{base}/timestamp_to_event", methods=["GET"], unquote=True,
                        name=f"timestamp_to_event{suffix}")
