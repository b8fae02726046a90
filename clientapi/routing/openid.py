"""POST /user/{userId}/openid/request_token.

Spec: data/api/client-server/openid.yaml. The token proves to a third
party who the user is: the party asks this server's federation API
(``/_matrix/federation/v1/openid/userinfo``, federationapi/routing/openid.py).
Tokens are self-contained (common/openid.py).
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.http import json_response, parse_json_body
from common.openid import OpenIDTokens


def add_routes(blueprint: Blueprint, services: Services) -> None:
    tokens = OpenIDTokens(services.config.macaroon_secret)

    async def request_token(request: Request, user_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        if device.user_id != user_id:
            raise errors.Forbidden("Cannot request tokens for other users")
        parse_json_body(request, allow_empty=True)
        return json_response({
            "access_token": tokens.issue(user_id),
            "token_type": "Bearer",
            "matrix_server_name": services.server_name,
            "expires_in": tokens.lifetime_ms // 1000,
        })

    client_route(blueprint, "/user/<user_id>/openid/request_token", request_token, ["POST"],
                 name="openid_request_token")
