"""The deprecated GET /events and GET /initialSync
(syncapi/internal/event_stream.py)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.http import json_response, query_int
from syncapi.internal.event_stream import DEFAULT_TIMEOUT_MS, event_stream, global_initial_sync
from syncapi.internal.room_initial_sync import DEFAULT_LIMIT
from syncapi.internal.rooms import RoomReads
from syncapi.internal.sync import SyncHandler
from syncapi.notifier import Notifier
from syncapi.routing.auth import CLIENT_PREFIXES, authenticate
from syncapi.storage.database import SyncDatabase
from userapi.api import AuthenticationAPI

MAX_TIMEOUT_MS = 60_000
MAX_LIMIT = 100


def register(blueprint: Blueprint, database: SyncDatabase, sync_handler: SyncHandler, notifier: Notifier,
             reads: RoomReads, userapi: AuthenticationAPI) -> None:
    async def events(request: Request) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        # The notifier starts at the database's positions.
        await sync_handler.ensure_started()
        timeout = query_int(request, "timeout", DEFAULT_TIMEOUT_MS, minimum=0, maximum=MAX_TIMEOUT_MS)
        return json_response(await event_stream(
            database, notifier, requester, from_token=request.args.get("from") or None,
            timeout_ms=DEFAULT_TIMEOUT_MS if timeout is None else timeout,
            room_id=request.args.get("room_id") or None))

    async def initial_sync(request: Request) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        await sync_handler.ensure_started()
        limit = query_int(request, "limit", DEFAULT_LIMIT, minimum=0, maximum=MAX_LIMIT)
        return json_response(await global_initial_sync(database, notifier, reads, requester,
                                                       limit=DEFAULT_LIMIT if limit is None else limit))

    for prefix in CLIENT_PREFIXES:
        suffix = prefix.replace("/", "_")
        blueprint.add_route(events, f"{prefix}/events", methods=["GET"], name=f"event_stream{suffix}")
        blueprint.add_route(initial_sync, f"{prefix}/initialSync", methods=["GET"],
                            name=f"global_initial_sync{suffix}")
