"""GET /room_keys/version: there is no server-side key backup yet.

The spec answers 404 M_NOT_FOUND when the user has no backup, and clients
(matrix-js-sdk before its first sync, Element) ask this before anything
else; a 404 M_UNRECOGNIZED would read as "this server has no such API".
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def current_backup_version(request: Request) -> HTTPResponse:
        await services.device_for(request)
        raise errors.NotFound("No current backup version")

    client_route(blueprint, "/room_keys/version", current_backup_version, ["GET"], name="room_keys_version")
