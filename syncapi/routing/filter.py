"""POST /user/{userId}/filter and GET /user/{userId}/filter/{filterId}
(data/api/client-server/filter.yaml)."""

from __future__ import annotations

import json
from collections import OrderedDict

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response, parse_json_body
from matrixlib.canonical_json import encode_canonical_json
from syncapi.filters import Filter, parse_filter, parse_filter_json
from syncapi.routing.auth import CLIENT_PREFIXES, authenticate
from syncapi.storage.database import SyncDatabase
from userapi.api import AuthenticationAPI

# Inline filters parsed lately, by their text: a client sends the same one
# with every /sync, and a parsed Filter is immutable. Stored filters are
# kept by SyncDatabase.get_filter and parsed here (same cache, by their text).
PARSED_FILTERS_KEPT = 1024
_parsed: OrderedDict[str, Filter] = OrderedDict()


def _parse_cached(text: str) -> Filter:
    parsed = _parsed.get(text)
    if parsed is not None:
        _parsed.move_to_end(text)
        return parsed
    parsed = parse_filter_json(text)  # a bad filter raises and is not kept
    _parsed[text] = parsed
    if len(_parsed) > PARSED_FILTERS_KEPT:
        _parsed.popitem(last=False)
    return parsed


async def load_filter(database: SyncDatabase, user_id: str, value: str | None) -> Filter:
    """/sync's ``filter`` parameter: inline JSON when it starts with "{", else a stored ID."""
    if not value:
        return Filter()
    if value.lstrip().startswith("{"):
        return _parse_cached(value)
    try:
        filter_id = int(value)
    except ValueError:
        raise errors.InvalidParam("filter must be a filter ID or a JSON object") from None
    stored = await database.get_filter(user_id, filter_id)
    if stored is None:
        raise errors.InvalidParam(f"no filter {value} for this user")
    return _parse_cached(stored)


def register(blueprint: Blueprint, database: SyncDatabase, userapi: AuthenticationAPI) -> None:
    async def create_filter(request: Request, user_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        if requester.user_id != user_id:
            raise errors.Forbidden("Cannot create filters for other users")
        body = parse_json_body(request)
        parse_filter(body)  # refuse what /sync could not use
        filter_id = await database.store_filter(user_id, encode_canonical_json(body).decode())
        return json_response({"filter_id": str(filter_id)})

    async def get_filter(request: Request, user_id: str, filter_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        if requester.user_id != user_id:
            raise errors.Forbidden("Cannot get filters for other users")
        try:
            number = int(filter_id)
        except ValueError:
            raise errors.NotFound("No such filter") from None
        stored = await database.get_filter(user_id, number)
        if stored is None:
            raise errors.NotFound("No such filter")
        return json_response(json.loads(stored))

    for prefix in CLIENT_PREFIXES:
        blueprint.add_route(create_filter, f"{prefix}/user/<user_id>/filter", methods=["POST"],
                            unquote=True, name=f"create_filter{prefix.replace('/', '_')}")
        blueprint.add_route(get_filter, f"{prefix}/user/<user_id>/filter/<filter_id>", methods=["GET"],
                            unquote=True, name=f"get_filter{prefix.replace('/', '_')}")
