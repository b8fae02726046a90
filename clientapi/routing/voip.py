"""GET /voip/turnServer.

Spec: data/api/client-server/voip.yaml. Credentials for the configured
TURN servers: with a shared secret, those of the TURN REST API that coturn
implements (``use-auth-secret``): the username is the expiry time and the
user ID, the password the HMAC-SHA1 of the username under the secret; else
the configured fixed username and password. As Synapse, a server with no
TURN servers answers ``{}`` (clients then call without TURN), and guests
get credentials unless ``turn_allow_guests`` is off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.services import Services
from clientapi.routing import client_route
from common.guest_access import GuestAccessForbidden
from common.http import json_response


def turn_credentials(*, user_id: str, uris: list[str], shared_secret: str, username: str, password: str,
                     lifetime_ms: int, now_ms: int) -> dict[str, Any]:
    """The answer for ``user_id``: {} when nothing usable is configured."""
    ttl = lifetime_ms // 1000
    if not uris:
        return {}
    if shared_secret:
        turn_username = f"{(now_ms + lifetime_ms) // 1000}:{user_id}"
        mac = hmac.new(shared_secret.encode(), turn_username.encode(), hashlib.sha1).digest()
        return {"username": turn_username, "password": base64.b64encode(mac).decode("ascii"),
                "uris": list(uris), "ttl": ttl}
    if username and password:
        return {"username": username, "password": password, "uris": list(uris), "ttl": ttl}
    return {}


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def turn_server(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        config = services.config
        if device.is_guest and not config.turn_allow_guests:
            raise GuestAccessForbidden("Guests may not use the TURN servers")
        return json_response(turn_credentials(
            user_id=device.user_id, uris=config.turn_uris, shared_secret=config.turn_shared_secret,
            username=config.turn_username, password=config.turn_password,
            lifetime_ms=config.turn_user_lifetime_ms, now_ms=int(time.time() * 1000)))

    client_route(blueprint, "/voip/turnServer", turn_server, ["GET"], name="turn_server")
