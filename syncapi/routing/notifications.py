"""GET /notifications (data/api/client-server/notifications.yaml)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response, query_int
from syncapi.internal.push import DEFAULT_NOTIFICATIONS_LIMIT, MAX_NOTIFICATIONS_LIMIT, notifications_page
from syncapi.routing.auth import CLIENT_PREFIXES, authenticate
from syncapi.storage.database import SyncDatabase
from userapi.api import AuthenticationAPI


def register(blueprint: Blueprint, database: SyncDatabase, userapi: AuthenticationAPI) -> None:
    async def notifications(request: Request) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        limit = query_int(request, "limit", DEFAULT_NOTIFICATIONS_LIMIT, minimum=1,
                          maximum=MAX_NOTIFICATIONS_LIMIT) or DEFAULT_NOTIFICATIONS_LIMIT
        only = request.args.get("only")
        if only not in (None, "highlight"):
            raise errors.InvalidParam("only must be 'highlight'")
        return json_response(await notifications_page(
            database, requester, from_token=request.args.get("from") or None, limit=limit,
            only_highlight=only == "highlight"))

    for prefix in CLIENT_PREFIXES:
        blueprint.add_route(notifications, f"{prefix}/notifications", methods=["GET"],
                            name=f"notifications{prefix.replace('/', '_')}")
