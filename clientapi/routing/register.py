"""POST /register (m.login.dummy interactive auth) and GET /register/available.

Spec: client-server API "Account registration and management",
data/api/client-server/registration.yaml; guests (``kind=guest``):
modules/guest_access.md, and a guest's upgrade to a full account by
registering with ``guest_access_token`` (same user ID, the new password).
As Synapse: usernames are lowercased, the username is checked before the
auth stage (so a client
learns M_USER_IN_USE first), and a single request carrying
``auth: {type: m.login.dummy}`` without a session is accepted.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.services import Services
from clientapi.internal.uia import DUMMY, request_purpose
from clientapi.routing import client_route
from common import errors
from common.guest_access import GuestAccessForbidden
from common.http import json_response, parse_json_body

MAX_PASSWORD_LENGTH = 512
_GENERATED_ALPHABET = string.ascii_lowercase + string.digits


def _generated_localpart() -> str:
    return "u" + "".join(secrets.choice(_GENERATED_ALPHABET) for _ in range(11))


def _guest_localpart() -> str:
    # Numeric, as guest IDs are (no other account may have one); random
    # rather than counted, so split instances need no shared counter.
    return str(secrets.randbelow(9 * 10**11) + 10**11)


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def register(request: Request) -> HTTPResponse:
        services.register_limiter.check(services.client_ip(request))
        kind = request.args.get("kind", "user")
        if kind == "guest":
            return await register_guest(request)
        if kind != "user":
            raise errors.InvalidParam(f"unknown kind {kind!r}")
        if not services.config.registration.open:
            raise errors.Forbidden("Registration has been disabled")
        body = parse_json_body(request)
        username = params.optional_str(body, "username")
        password = params.optional_str(body, "password")
        device_id, display_name = params.device_fields(body)
        inhibit_login = params.optional_bool(body, "inhibit_login")
        want_refresh_token = params.optional_bool(body, "refresh_token")
        auth = params.optional_dict(body, "auth")
        if password is not None and len(password) > MAX_PASSWORD_LENGTH:
            raise errors.InvalidParam("Password too long")

        # A guest becoming a full user keeps their user ID (guest_access.md).
        guest_localpart = await _upgrading_guest(services, body)
        if guest_localpart is not None:
            if username is not None and username.lower() != guest_localpart:
                raise errors.InvalidParam("username must be the guest's own localpart")
            username = guest_localpart
        elif username is not None:
            username = username.lower()
            available = await services.userapi.query_account_availability(
                ua_pb.QueryAccountAvailabilityRequest(localpart=username))
            if not available.available:
                raise errors.UserInUse("User ID already taken.")

        purpose = request_purpose(request.method, request.path)
        if auth is None:
            return json_response(services.sessions.challenge(purpose=purpose), status=401)
        auth_type = params.optional_str(auth, "type")
        session = params.optional_str(auth, "session")
        if session is not None and not services.sessions.is_valid(session, purpose):
            return json_response(services.sessions.unknown_session(stage=DUMMY, purpose=purpose), status=401)
        if auth_type != DUMMY:
            return json_response(services.sessions.challenge(
                session, purpose=purpose, errcode="M_UNRECOGNIZED",
                error=f"Unsupported auth type {auth_type!r}"), status=401)

        if guest_localpart is not None:
            account = await services.userapi.perform_guest_upgrade(ua_pb.PerformGuestUpgradeRequest(
                localpart=guest_localpart, password=password or ""))
        else:
            account = await _create_account(services, username, password or "")
        if inhibit_login:
            return json_response({"user_id": account.user_id})
        device = await services.userapi.perform_device_creation(ua_pb.PerformDeviceCreationRequest(
            user_id=account.user_id, device_id=device_id or "", display_name=display_name or "",
            ip=services.client_ip(request), refresh_token=want_refresh_token))
        answer = {"user_id": account.user_id, "access_token": device.access_token,
                  "device_id": device.device_id, "home_server": services.server_name}
        return json_response({**answer, **token_lifetime_fields(device)})

    async def register_guest(request: Request) -> HTTPResponse:
        """A guest account: no interactive auth, a numeric user ID, and a
        token that reaches only the endpoints open to guests."""
        if not services.config.registration.allow_guests:
            raise GuestAccessForbidden("Guest access is disabled")
        body = parse_json_body(request, allow_empty=True)
        device_id, display_name = params.device_fields(body)
        want_refresh_token = params.optional_bool(body, "refresh_token")
        account = None
        for _ in range(5):
            try:
                account = await services.userapi.perform_account_creation(ua_pb.PerformAccountCreationRequest(
                    localpart=_guest_localpart(), is_guest=True))
                break
            except errors.UserInUse:
                continue
        if account is None:
            raise errors.MatrixError("could not choose a free guest user ID")
        device = await services.userapi.perform_device_creation(ua_pb.PerformDeviceCreationRequest(
            user_id=account.user_id, device_id=device_id or "", display_name=display_name or "",
            ip=services.client_ip(request), refresh_token=want_refresh_token))
        answer = {"user_id": account.user_id, "access_token": device.access_token,
                  "device_id": device.device_id, "home_server": services.server_name}
        return json_response({**answer, **token_lifetime_fields(device)})

    async def register_available(request: Request) -> HTTPResponse:
        username = request.args.get("username")
        if not username:
            raise errors.MissingParam("Missing parameter: username")
        answer = await services.userapi.query_account_availability(
            ua_pb.QueryAccountAvailabilityRequest(localpart=str(username).lower()))
        if not answer.available:
            raise errors.UserInUse("User ID already taken.")
        return json_response({"available": True})

    async def registration_token_validity(request: Request) -> HTTPResponse:
        """GET /v1/register/m.login.registration_token/validity
        (registration_tokens.yaml): this server issues no registration
        tokens, so none is valid; 403 while registration is closed."""
        if not services.config.registration.open:
            raise errors.Forbidden("Registration is disabled")
        if not request.args.get("token"):
            raise errors.MissingParam("Missing parameter: token")
        return json_response({"valid": False})

    client_route(blueprint, "/register", register, ["POST"], name="register")
    client_route(blueprint, "/register/m.login.registration_token/validity", registration_token_validity,
                 ["GET"], name="registration_token_validity", prefixes=("/_matrix/client/v1",))
    client_route(blueprint, "/register/available", register_available, ["GET"], name="register_available")


def token_lifetime_fields(device: ua_pb.Device) -> dict[str, Any]:
    """``refresh_token`` and ``expires_in_ms`` of a login or registration answer, when set."""
    fields: dict[str, Any] = {}
    if device.refresh_token:
        fields["refresh_token"] = device.refresh_token
    if device.expires_in_ms:
        fields["expires_in_ms"] = device.expires_in_ms
    return fields


async def _upgrading_guest(services: Services, body: dict[str, Any]) -> str | None:
    """The localpart of the guest whose ``guest_access_token`` the body
    carries, if any; 403 for a token that is not a live guest's."""
    token = params.optional_str(body, "guest_access_token")
    if token is None:
        return None
    try:
        device = await services.userapi.query_access_token(ua_pb.QueryAccessTokenRequest(access_token=token))
    except errors.UnknownToken:
        raise errors.Forbidden("Invalid guest access token") from None
    if not device.is_guest:
        raise errors.Forbidden("The access token is not a guest's")
    return device.user_id[1:].partition(":")[0]


async def _create_account(services: Services, username: str | None, password: str) -> ua_pb.Account:
    if username is not None:
        return await services.userapi.perform_account_creation(
            ua_pb.PerformAccountCreationRequest(localpart=username, password=password))
    # No username: pick one, retrying on the unlikely collision.
    for _ in range(5):
        try:
            return await services.userapi.perform_account_creation(
                ua_pb.PerformAccountCreationRequest(localpart=_generated_localpart(), password=password))
        except errors.UserInUse:
            continue
    raise errors.MatrixError("could not choose a free user ID")
