"""Interactive auth with the account's password (m.login.password), for
requests that need more than an access token: deleting devices, changing
the password, deactivating the account."""

from __future__ import annotations

from typing import Any

from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.services import Services
from clientapi.internal.uia import PASSWORD
from common import errors
from common.http import json_response


def localpart_of(user: str, server_name: str) -> str:
    """A localpart from what the client typed: a localpart or a full user ID
    of this server (lowercased, as registration lowercases)."""
    if user.startswith("@"):
        localpart, _, server = user[1:].partition(":")
        if server != server_name:
            raise errors.Forbidden("Invalid username or password")
        return localpart.lower()
    return user.lower()


async def password_auth(services: Services, device: ua_pb.Device, body: dict[str, Any],
                         purpose: str) -> HTTPResponse | None:
    """None when ``body.auth`` proves the caller knows the password; the
    401 answer (the flow, or a failed stage) otherwise. ``purpose`` (see
    ``uia.request_purpose``) binds the session to the request."""
    sessions = services.sessions
    auth = params.optional_dict(body, "auth")
    if auth is None:
        return json_response(sessions.challenge(stage=PASSWORD, purpose=purpose), status=401)
    session = params.optional_str(auth, "session")
    if session is not None and not sessions.is_valid(session, purpose):
        return json_response(sessions.unknown_session(stage=PASSWORD, purpose=purpose), status=401)
    session = session or sessions.new_session(purpose)
    auth_type = params.optional_str(auth, "type")
    if auth_type != PASSWORD:
        return json_response(sessions.challenge(session, stage=PASSWORD, purpose=purpose,
                                                errcode="M_UNRECOGNIZED",
                                                error=f"Unsupported auth type {auth_type!r}"), status=401)
    identifier = params.optional_dict(auth, "identifier")
    user = params.require_str(identifier, "user") if identifier is not None else params.optional_str(auth, "user")
    password = params.require_str(auth, "password")
    localpart = localpart_of(user or device.user_id, services.server_name)
    if f"@{localpart}:{services.server_name}" != device.user_id:
        raise errors.Forbidden("The auth must be for the requesting user")
    try:
        await services.userapi.perform_password_check(
            ua_pb.PerformPasswordCheckRequest(localpart=localpart, password=password))
    except errors.Forbidden:
        return json_response(sessions.challenge(session, stage=PASSWORD, purpose=purpose,
                                                errcode="M_FORBIDDEN", error="Invalid password"), status=401)
    return None
