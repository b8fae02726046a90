"""Third-party identifiers (content/client-server-api, "Adding Account
Administrative Contact Information"; data/api/client-server/
administrative_contact.yaml, and the requestToken endpoints of
registration.yaml and password_management.yaml).

This server sends no email or SMS and trusts no identity server, so no
account ever has a third-party identifier: the list is empty, validation
requests are refused with the spec's errors (``M_THREEPID_MEDIUM_NOT_SUPPORTED``
for adding a contact, ``M_THREEPID_DENIED`` for registering or resetting a
password with one), binding through an identity server is
``M_SERVER_NOT_TRUSTED``, and unbinding or deleting answers ``no-support``,
as Synapse answers without email or identity server configured.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.password_auth import password_auth
from clientapi.internal.services import Services
from clientapi.internal.uia import request_purpose
from clientapi.routing import client_route
from common import errors
from common.http import json_response, parse_json_body

MEDIA = ("email", "msisdn")


def _error(status: int, errcode: str, error: str) -> HTTPResponse:
    return json_response({"errcode": errcode, "error": error}, status=status)


def _require_token_request(body: dict[str, Any], medium: str) -> None:
    """The fields every requestToken body must have (M_MISSING_PARAM / M_BAD_JSON otherwise)."""
    params.require_str(body, "client_secret")
    attempt = body.get("send_attempt")
    if attempt is None:
        raise errors.MissingParam("Missing parameter: send_attempt")
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        raise errors.BadJSON("send_attempt must be an integer")
    if medium == "email":
        params.require_str(body, "email")
    else:
        params.require_str(body, "country")
        params.require_str(body, "phone_number")


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def list_threepids(request: Request) -> HTTPResponse:
        await services.device_for(request)
        return json_response({"threepids": []})

    async def add_threepid_deprecated(request: Request) -> HTTPResponse:
        await services.device_for(request)
        body = parse_json_body(request)
        if params.optional_dict(body, "three_pid_creds") is None:
            raise errors.MissingParam("Missing parameter: three_pid_creds")
        return _error(403, "M_THREEPID_AUTH_FAILED", "The third-party credentials could not be verified")

    async def add_threepid(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request)
        params.require_str(body, "client_secret")
        params.require_str(body, "sid")
        refused = await password_auth(services, device, body,
                                      request_purpose(request.method, request.path, device.user_id))
        if refused is not None:
            return refused
        # No validation session can exist: this server validates nothing.
        return _error(400, "M_THREEPID_AUTH_FAILED", "No validated third-party identifier session found")

    async def bind_threepid(request: Request) -> HTTPResponse:
        await services.device_for(request)
        body = parse_json_body(request)
        for name in ("client_secret", "id_server", "id_access_token", "sid"):
            params.require_str(body, name)
        return _error(400, "M_SERVER_NOT_TRUSTED", "This server does not trust any identity server")

    async def unbind_or_delete(request: Request) -> HTTPResponse:
        await services.device_for(request)
        body = parse_json_body(request)
        params.require_str(body, "medium")
        params.require_str(body, "address")
        # Nothing is bound, and no identity server is known to ask.
        return json_response({"id_server_unbind_result": "no-support"})

    def request_token(medium: str, *, purpose: str) -> Any:
        async def handler(request: Request) -> HTTPResponse:
            _require_token_request(parse_json_body(request), medium)
            if purpose == "add":
                return _error(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED",
                              f"This server does not support adding {medium} contacts")
            return _error(403, "M_THREEPID_DENIED",
                          f"Third-party identifiers ({medium}) are not supported on this server")
        return handler

    client_route(blueprint, "/account/3pid", list_threepids, ["GET"], name="threepid_list")
    client_route(blueprint, "/account/3pid", add_threepid_deprecated, ["POST"], name="threepid_add_deprecated")
    client_route(blueprint, "/account/3pid/add", add_threepid, ["POST"], name="threepid_add")
    client_route(blueprint, "/account/3pid/bind", bind_threepid, ["POST"], name="threepid_bind")
    client_route(blueprint, "/account/3pid/unbind", unbind_or_delete, ["POST"], name="threepid_unbind")
    client_route(blueprint, "/account/3pid/delete", unbind_or_delete, ["POST"], name="threepid_delete")
    for medium in MEDIA:
        client_route(blueprint, f"/account/3pid/{medium}/requestToken", request_token(medium, purpose="add"),
                     ["POST"], name=f"threepid_{medium}_token")
        client_route(blueprint, f"/register/{medium}/requestToken", request_token(medium, purpose="register"),
                     ["POST"], name=f"register_{medium}_token")
        client_route(blueprint, f"/account/password/{medium}/requestToken",
                     request_token(medium, purpose="password"), ["POST"], name=f"password_{medium}_token")
