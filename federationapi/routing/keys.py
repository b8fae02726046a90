"""Server keys: publishing ours and the notary API.

Spec: server-server-api "Publishing Keys" (``GET /_matrix/key/v2/server``)
and "Querying Keys Through Another Server" (``GET
/_matrix/key/v2/query/{serverName}``, ``POST /_matrix/key/v2/query``). The
notary answers our own keys and the keys it has cached (fetching them from
the server when missing or not valid long enough, and serving the last
answer it has when the server cannot be reached), each re-signed by us.
These endpoints are not authenticated.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response, parse_json_body
from federationapi.keyring import KeyFetcher, KeyRing
from matrixlib.ids import is_valid_server_name
from matrixlib.signing import sign_json


def add_key_routes(blueprint: Blueprint, keyring: KeyRing, direct_fetcher: KeyFetcher) -> None:
    async def get_server_keys(request: Request, key_id: str = "") -> HTTPResponse:
        return json_response(keyring.own_key_response())

    async def query_keys(server_name: str, key_ids: list[str], minimum_valid_until_ts: int) -> list[Any]:
        if not is_valid_server_name(server_name):
            return []
        if server_name == keyring.server_name:
            return [keyring.own_key_response()]
        responses = await keyring.stored_key_responses(server_name, key_ids)
        if not any(_valid_until(r) >= minimum_valid_until_ts for r in responses):
            # Not cached or not fresh enough: ask the server; when it cannot
            # be reached the last answer we have is still served.
            if await keyring.refresh_server_keys(server_name, direct_fetcher):
                responses = await keyring.stored_key_responses(server_name, key_ids)
        return [sign_json(r, keyring.server_name, keyring.signing_key) for r in responses]

    def minimum_ts(value: Any) -> int:
        if value is None:
            return _now(keyring)
        if isinstance(value, bool) or not isinstance(value, int):
            raise errors.BadJSON("minimum_valid_until_ts must be an integer")
        return value

    async def get_query(request: Request, server_name: str) -> HTTPResponse:
        raw = request.args.get("minimum_valid_until_ts")
        try:
            minimum = minimum_ts(int(raw) if raw is not None else None)
        except ValueError:
            raise errors.InvalidParam("minimum_valid_until_ts must be an integer") from None
        return json_response({"server_keys": await query_keys(server_name, [], minimum)})

    async def post_query(request: Request) -> HTTPResponse:
        body = parse_json_body(request)
        criteria = body.get("server_keys")
        if not isinstance(criteria, dict):
            raise errors.BadJSON("server_keys must be an object")
        answered: list[Any] = []
        for server_name, by_key in criteria.items():
            if not isinstance(by_key, dict):
                raise errors.BadJSON("server_keys values must be objects")
            key_ids = [str(k) for k in by_key]
            asked = [minimum_ts(c["minimum_valid_until_ts"]) for c in by_key.values()
                     if isinstance(c, dict) and c.get("minimum_valid_until_ts") is not None]
            minimum = max(asked) if asked else _now(keyring)
            answered.extend(await query_keys(str(server_name), key_ids, minimum))
        return json_response({"server_keys": answered})

    blueprint.add_route(get_server_keys, "/_matrix/key/v2/server", methods=["GET"], name="server_keys")
    blueprint.add_route(get_server_keys, "/_matrix/key/v2/server/<key_id>", methods=["GET"],
                        name="server_keys_by_id")
    blueprint.add_route(get_query, "/_matrix/key/v2/query/<server_name>", methods=["GET"], name="key_query")
    blueprint.add_route(post_query, "/_matrix/key/v2/query", methods=["POST"], name="key_query_bulk")


def _valid_until(response: Any) -> int:
    value = response.get("valid_until_ts") if isinstance(response, dict) else None
    return value if isinstance(value, int) else 0


def _now(keyring: KeyRing) -> int:
    return keyring.now()
