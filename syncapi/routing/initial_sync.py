"""GET /rooms/{roomId}/initialSync (syncapi/internal/room_initial_sync.py)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.http import json_response, query_int
from syncapi.internal.room_initial_sync import DEFAULT_LIMIT, room_initial_sync
from syncapi.internal.rooms import RoomReads
from syncapi.routing.auth import CLIENT_PREFIXES, authenticate
from syncapi.storage.database import SyncDatabase
from userapi.api import AuthenticationAPI

MAX_LIMIT = 100


def register(blueprint: Blueprint, database: SyncDatabase, reads: RoomReads, userapi: AuthenticationAPI) -> None:
    async def initial_sync(request: Request, room_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        limit = query_int(request, "limit", DEFAULT_LIMIT, minimum=0, maximum=MAX_LIMIT)
        return json_response(await room_initial_sync(database, reads, requester, room_id,
                                                     limit=DEFAULT_LIMIT if limit is None else limit))

    for prefix in CLIENT_PREFIXES:
        suffix = prefix.replace("/", "_")
        blueprint.add_route(initial_sync, f"{prefix}/rooms/<room_id>/initialSync", methods=["GET"],
                            unquote=True, name=f"room_initial_sync{suffix}")
