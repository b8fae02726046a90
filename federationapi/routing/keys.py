"""Server keys: GET /_matrix/key/v2/server (server-server API, "Publishing Keys")."""

from __future__ import annotations

import time
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.http import json_response
from matrixlib.signing import encode_verify_key, sign_json

# How long other servers may cache our keys before asking again.
KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000


def server_keys_response(server_name: str, signing_key: Any, now_ms: int) -> dict[str, Any]:
    key_id = f"{signing_key.alg}:{signing_key.version}"
    body = {
        "server_name": server_name,
        "valid_until_ts": now_ms + KEY_VALIDITY_MS,
        "verify_keys": {key_id: {"key": encode_verify_key(signing_key.verify_key)}},
        "old_verify_keys": {},
    }
    return sign_json(body, server_name, signing_key)


def add_key_routes(blueprint: Blueprint, server_name: str, signing_key: Any) -> None:
    async def get_server_keys(request: Request, key_id: str = "") -> HTTPResponse:
        return json_response(server_keys_response(server_name, signing_key, int(time.time() * 1000)))

    blueprint.add_route(get_server_keys, "/_matrix/key/v2/server", methods=["GET"], name="server_keys")
    blueprint.add_route(get_server_keys, "/_matrix/key/v2/server/<key_id>", methods=["GET"],
                        name="server_keys_by_id")
