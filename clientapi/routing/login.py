"""GET/POST /login, POST /v1/login/get_token, POST /logout, POST /logout/all
and GET /account/whoami.

Spec: client-server API "Login", data/api/client-server/login.yaml,
login_token.yaml, logout.yaml, whoami.yaml. Logins are m.login.password and
m.login.token, with tokens a logged-in user gets from /login/get_token
after proving their password again (clientapi/internal/login_tokens.py).
"""

from __future__ import annotations

from typing import Any

from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.login_tokens import LoginTokens
from clientapi.internal.password_auth import localpart_of, password_auth
from clientapi.internal.ratelimit import TokenBucketLimiter
from clientapi.internal.services import Services
from clientapi.internal.uia import request_purpose
from clientapi.routing import client_route
from clientapi.routing.register import token_lifetime_fields
from common import errors
from common.config import RateLimit
from common.http import json_response, parse_json_body

PASSWORD = "m.login.password"
TOKEN = "m.login.token"
ID_USER = "m.id.user"
# The spec suggests at most one login token a minute.
GET_TOKEN_LIMIT = RateLimit(per_second=1 / 60, burst=1)


def add_routes(blueprint: Blueprint, services: Services) -> None:
    login_tokens = LoginTokens(services.config.macaroon_secret)
    get_token_limiter = TokenBucketLimiter(GET_TOKEN_LIMIT, enabled=services.config.rate_limits.enabled)

    async def login_flows(request: Request) -> HTTPResponse:
        return json_response({"flows": [{"type": PASSWORD}, {"type": TOKEN, "get_login_token": True}]})

    async def login(request: Request) -> HTTPResponse:
        services.login_limiter.check(services.client_ip(request))
        body = parse_json_body(request)
        login_type = params.require_str(body, "type")
        if login_type == TOKEN:
            token = params.require_str(body, "token")
            user_id = login_tokens.consume(token)
            if user_id is None:
                raise errors.Forbidden("Invalid login token")
            return await _logged_in(request, body, user_id)
        if login_type != PASSWORD:
            raise errors.MatrixError(f"Unknown login type {login_type}", http_status=400)
        identifier = params.optional_dict(body, "identifier")
        if identifier is not None:
            id_type = params.require_str(identifier, "type")
            if id_type != ID_USER:
                raise errors.MatrixError(f"Unknown identifier type {id_type}", http_status=400)
            user = params.require_str(identifier, "user")
        else:
            # The deprecated top-level `user` field.
            user = params.require_str(body, "user")
        password = params.require_str(body, "password")
        localpart = localpart_of(user, services.server_name)
        services.login_account_limiter.check(localpart)
        services.failed_login_limiter.ensure_available(localpart)
        try:
            account = await services.userapi.perform_password_check(
                ua_pb.PerformPasswordCheckRequest(localpart=localpart, password=password))
        except errors.Forbidden:
            services.failed_login_limiter.record(localpart)
            raise
        return await _logged_in(request, body, account.user_id)

    async def _logged_in(request: Request, body: dict[str, Any], user_id: str) -> HTTPResponse:
        """A new device (or a known device ID's new token) for the user."""
        device_id, display_name = params.device_fields(body)
        want_refresh_token = params.optional_bool(body, "refresh_token")
        device = await services.userapi.perform_device_creation(ua_pb.PerformDeviceCreationRequest(
            user_id=user_id, device_id=device_id or "", display_name=display_name or "",
            ip=services.client_ip(request), refresh_token=want_refresh_token))
        return json_response({
            "user_id": user_id, "access_token": device.access_token,
            "device_id": device.device_id, "home_server": services.server_name,
            "well_known": {"m.homeserver": {"base_url": services.base_url}},
            **token_lifetime_fields(device),
        })

    async def get_token(request: Request) -> HTTPResponse:
        """POST /v1/login/get_token: the password again every time (the
        spec: explicit consent for each new client), then a token."""
        device = await services.device_for(request)
        body = parse_json_body(request, allow_empty=True)
        refused = await password_auth(services, device, body,
                                      request_purpose(request.method, request.path, device.user_id))
        if refused is not None:
            return refused
        get_token_limiter.check(device.user_id)
        return json_response({"login_token": login_tokens.issue(device.user_id),
                              "expires_in_ms": login_tokens.lifetime_ms})

    async def refresh(request: Request) -> HTTPResponse:
        """POST /refresh (refresh.yaml): a new access token (and refresh token)."""
        body = parse_json_body(request)
        refresh_token = params.require_str(body, "refresh_token")
        device = await services.userapi.perform_token_refresh(
            ua_pb.PerformTokenRefreshRequest(refresh_token=refresh_token))
        return json_response({"access_token": device.access_token, **token_lifetime_fields(device)})

    async def logout(request: Request) -> HTTPResponse:
        # As Synapse: a client whose token expired (soft logout) may still log out.
        device = await services.device_for(request, allow_expired=True)
        await services.userapi.perform_device_deletion(ua_pb.PerformDeviceDeletionRequest(
            user_id=device.user_id, device_ids=[device.device_id]))
        return json_response({})

    async def logout_all(request: Request) -> HTTPResponse:
        device = await services.device_for(request, allow_expired=True)
        await services.userapi.perform_device_deletion(
            ua_pb.PerformDeviceDeletionRequest(user_id=device.user_id))
        return json_response({})

    async def whoami(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        return json_response({"user_id": device.user_id, "device_id": device.device_id,
                              "is_guest": device.is_guest})

    client_route(blueprint, "/login", login_flows, ["GET"], name="login_flows")
    client_route(blueprint, "/login/get_token", get_token, ["POST"], name="login_get_token",
                 prefixes=("/_matrix/client/v1",))
    client_route(blueprint, "/login", login, ["POST"], name="login")
    client_route(blueprint, "/refresh", refresh, ["POST"], name="refresh")
    client_route(blueprint, "/logout", logout, ["POST"], name="logout")
    client_route(blueprint, "/logout/all", logout_all, ["POST"], name="logout_all")
    client_route(blueprint, "/account/whoami", whoami, ["GET"], name="whoami")
