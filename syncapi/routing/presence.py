"""GET and PUT /presence/{userId}/status (data/api/client-server/presence.yaml).

Served by the sync API, which holds presence (see syncapi/internal/presence.py).
Only the user may set their own presence (403 otherwise); anyone sharing a
room with them (and they themselves) may read it.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response, parse_json_body
from syncapi.internal.presence import PRESENCE_STATES, PresenceWriter
from syncapi.internal.sync import presence_content
from syncapi.internal.typing import now_ms
from syncapi.routing.auth import CLIENT_PREFIXES, authenticate
from syncapi.storage.database import SyncDatabase
from userapi.api import AuthenticationAPI

MAX_STATUS_MSG = 2048


def register(blueprint: Blueprint, database: SyncDatabase, userapi: AuthenticationAPI,
             writer: PresenceWriter) -> None:
    async def get_presence(request: Request, user_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        if user_id != requester.user_id:
            async with database.read() as reader:
                visible = await reader.shares_room(requester.user_id, user_id)
            if not visible:
                raise errors.Forbidden("You are not allowed to see their presence")
        found = await database.presence_of(user_id)
        if found is None:
            return json_response({"presence": "offline"})
        content = presence_content(found, now_ms())
        return json_response(content)

    async def put_presence(request: Request, user_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        if user_id != requester.user_id:
            raise errors.Forbidden("You cannot set the presence of another user")
        body: dict[str, Any] = parse_json_body(request)
        presence = body.get("presence")
        if presence is None:
            raise errors.MissingParam("Missing parameter: presence")
        if presence not in PRESENCE_STATES:
            raise errors.InvalidParam("presence must be online, unavailable or offline")
        status_msg = body.get("status_msg")
        if status_msg is not None and not isinstance(status_msg, str):
            raise errors.BadJSON("status_msg must be a string")
        if status_msg is not None and len(status_msg) > MAX_STATUS_MSG:
            raise errors.InvalidParam(f"status_msg is over {MAX_STATUS_MSG} characters")
        await writer.set_presence(user_id, presence, status_msg, keep_status=False)
        return json_response({})

    for prefix in CLIENT_PREFIXES:
        suffix = prefix.replace("/", "_")
        blueprint.add_route(get_presence, f"{prefix}/presence/<user_id>/status", methods=["GET"],
                            name=f"get_presence{suffix}", unquote=True)
        blueprint.add_route(put_presence, f"{prefix}/presence/<user_id>/status", methods=["PUT"],
                            name=f"put_presence{suffix}", unquote=True)
