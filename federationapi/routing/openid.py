"""GET /_matrix/federation/v1/openid/userinfo.

Spec: data/api/server-server/openid.yaml. A third party (not a server: the
request is not X-Matrix signed) exchanges an OpenID token that a user of
this server got from POST /user/{userId}/openid/request_token for the
user's ID. Tokens are self-contained (common/openid.py); an unknown,
altered or expired one is 401 M_UNKNOWN_TOKEN.
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response
from common.openid import OpenIDTokens

USERINFO_PATH = "/_matrix/federation/v1/openid/userinfo"


def add_openid_routes(blueprint: Blueprint, tokens: OpenIDTokens) -> None:
    async def userinfo(request: Request) -> HTTPResponse:
        token = request.args.get("access_token")
        if not token:
            raise errors.MissingParam("Missing parameter: access_token")
        user_id = tokens.user_of(token)
        if user_id is None:
            raise errors.UnknownToken("Access Token unknown or expired")
        return json_response({"sub": user_id})

    blueprint.add_route(userinfo, USERINFO_PATH, methods=["GET"], name="openid_userinfo")
