"""GET /_matrix/client/v3/keys/changes (data/api/client-server/keys.yaml):
the users whose device lists changed between two /sync tokens, and those
who no longer share a room with the caller. Served here because the tokens
are the sync API's."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response
from syncapi.internal.device_lists import device_list_summary
from syncapi.routing.auth import CLIENT_PREFIXES, authenticate
from syncapi.storage.database import SyncDatabase
from syncapi.tokens import StreamToken
from userapi.api import AuthenticationAPI


def register(blueprint: Blueprint, database: SyncDatabase, userapi: AuthenticationAPI) -> None:
    async def key_changes(request: Request) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        tokens = []
        for name in ("from", "to"):
            text = request.args.get(name)
            if not text:
                raise errors.MissingParam(f"Missing parameter: {name}")
            tokens.append(StreamToken.parse(str(text)))
        since, upto = tokens
        changed, left = await device_list_summary(database, requester.user_id, since, upto)
        return json_response({"changed": changed, "left": left})

    for prefix in CLIENT_PREFIXES:
        blueprint.add_route(key_changes, f"{prefix}/keys/changes", methods=["GET"],
                            name=f"keys_changes{prefix.replace('/', '_')}")
