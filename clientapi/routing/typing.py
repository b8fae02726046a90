"""PUT /rooms/{roomId}/typing/{userId} (data/api/client-server/typing.yaml).

Only the user may say they are typing (403 otherwise), and only in a room
they are joined to (403). The update goes to ``clientapi.typing``; the sync
API shows it to the room's members until the timeout passes.
"""

from __future__ import annotations

import time

from myelin.clientapi.v1 import edu_log_pb2
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.membership import current_membership
from clientapi.internal.services import Services
from clientapi.producers import produce_typing
from clientapi.routing import client_route
from common import errors
from common.http import json_response, parse_json_body

# As Synapse: a client that asks for no timeout gets 30 s, and none gets more than 120 s.
DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 120_000


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def put_typing(request: Request, room_id: str, user_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        if user_id != device.user_id:
            raise errors.Forbidden("You cannot set the typing state of another user")
        body = parse_json_body(request)
        typing = body.get("typing")
        if typing is None:
            raise errors.MissingParam("Missing parameter: typing")
        if not isinstance(typing, bool):
            raise errors.BadJSON("typing must be a boolean")
        timeout = body.get("timeout")
        if timeout is None:
            timeout = DEFAULT_TIMEOUT_MS
        elif isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
            raise errors.BadJSON("timeout must be a non-negative integer")
        membership = await current_membership(services, room_id, user_id)
        if membership.membership != "join":
            raise errors.Forbidden(f"{user_id} is not in room {room_id}")
        await produce_typing(services.log, edu_log_pb2.TypingUpdate(
            room_id=room_id, user_id=user_id, typing=typing, timeout_ms=min(timeout, MAX_TIMEOUT_MS),
            sent_at_ms=int(time.time() * 1000)))
        return json_response({})

    client_route(blueprint, "/rooms/<room_id>/typing/<user_id>", put_typing, ["PUT"], name="put_typing")
