"""Authenticating inbound federation requests (server-server-api "Request
Authentication").

Every request under ``/_matrix/federation/`` must carry an ``X-Matrix``
Authorization header naming us as destination, signed by the origin with
a key valid now; ``/_matrix/federation/v1/version`` is the exception. A
missing, malformed or bad signature is 401 ``M_UNAUTHORIZED``. The origin
ends up in ``request.ctx.origin`` for the route to use.

``add_federation_auth(blueprint, authenticator)`` installs the check on a
blueprint: every federation route added to that blueprint is covered.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

from sanic import Blueprint, Request

from common import errors
from federationapi.keyring import KeyRing
from matrixlib.federation_auth import (
    AuthHeaderError,
    check_destination,
    parse_x_matrix_header,
    verify_request,
)
from matrixlib.signing import SignatureError

logger = logging.getLogger(__name__)

FEDERATION_PREFIX = "/_matrix/federation/"
# The OpenID userinfo is asked by third parties holding a user's token, not by servers.
UNAUTHENTICATED_PATHS = frozenset({"/_matrix/federation/v1/version", "/_matrix/federation/v1/openid/userinfo"})


class Unauthorized(errors.MatrixError):
    """401 M_UNAUTHORIZED: the request's X-Matrix signature is missing or bad."""

    errcode = "M_UNAUTHORIZED"
    http_status = 401
    grpc_code: ClassVar[str] = "UNAUTHENTICATED"


class FederationAuthenticator:
    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring

    async def authenticate(self, method: str, uri: str, authorization_headers: list[str],
                           body: bytes) -> str:
        """The origin server of a request whose signature checks out; raises
        ``Unauthorized``. Several Authorization headers may be sent (one per
        key); the first X-Matrix one that verifies wins."""
        content: Any = None
        if body:
            try:
                content = json.loads(body, parse_constant=_reject_constant)
            except (ValueError, UnicodeDecodeError):
                raise errors.NotJSON("Content not JSON.") from None
        candidates = [h for h in authorization_headers if h.strip().lower().startswith("x-matrix")]
        if not candidates:
            raise Unauthorized("Missing X-Matrix Authorization header")
        failure = "Invalid X-Matrix Authorization header"
        for header in candidates:
            try:
                auth = parse_x_matrix_header(header)
                check_destination(auth, self._keyring.server_name)
                keys = await self._keyring.get_verify_keys(auth.origin, [auth.key_id], self._keyring.now())
                key = keys.get(auth.key_id)
                if key is None:
                    raise SignatureError(f"no valid key {auth.key_id} of {auth.origin}")
                verify_request(auth, key.key, method=method, uri=uri,
                               our_server_name=self._keyring.server_name, content=content)
                return auth.origin
            except (AuthHeaderError, SignatureError) as e:
                failure = f"Invalid X-Matrix Authorization: {e}"
        logger.info("refused a federation request %s %s: %s", method, uri, failure)
        raise Unauthorized(failure)

    async def authenticate_request(self, request: Request) -> str:
        return await self.authenticate(request.method, request_target(request),
                                       request.headers.getall("authorization", []), request.body or b"")


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON.
    raise ValueError(name)


def request_target(request: Request) -> str:
    """The path and query exactly as the sender wrote them (what it signed)."""
    raw: bytes = request.raw_url
    return raw.decode("utf-8", "surrogateescape")


def needs_authentication(path: str) -> bool:
    return path.startswith(FEDERATION_PREFIX) and path.rstrip("/") not in UNAUTHENTICATED_PATHS


def add_federation_auth(blueprint: Blueprint, authenticator: FederationAuthenticator) -> None:
    async def authenticate(request: Request) -> None:
        if request.method == "OPTIONS" or not needs_authentication(request.path):
            return
        request.ctx.origin = await authenticator.authenticate_request(request)

    blueprint.middleware(authenticate, "request")
