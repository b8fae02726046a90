"""POST /search (data/api/client-server/search.yaml) and POST
/user_directory/search (data/api/client-server/users.yaml)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response, parse_json_body
from syncapi.internal.search import SearchHandler, parse_search_request
from syncapi.routing.auth import CLIENT_PREFIXES, authenticate
from syncapi.storage.database import SyncDatabase
from syncapi.storage.tables.search import search_words
from userapi.api import AuthenticationAPI

DEFAULT_DIRECTORY_LIMIT = 10
MAX_DIRECTORY_LIMIT = 100


def register(blueprint: Blueprint, database: SyncDatabase, handler: SearchHandler,
             userapi: AuthenticationAPI) -> None:
    async def search(request: Request) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        body = parse_search_request(parse_json_body(request))
        return json_response(await handler.search(requester, body, request.args.get("next_batch")))

    async def user_directory_search(request: Request) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        body = parse_json_body(request)
        term = body.get("search_term")
        if term is None:
            raise errors.MissingParam("Missing parameter: search_term")
        if not isinstance(term, str):
            raise errors.BadJSON("search_term must be a string")
        limit = body.get("limit", DEFAULT_DIRECTORY_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise errors.BadJSON("limit must be a non-negative integer")
        limit = min(limit, MAX_DIRECTORY_LIMIT)
        words = search_words(term)
        if not words or limit == 0:
            return json_response({"results": [], "limited": False})
        async with database.read() as reader:
            found = await reader.search_user_directory(requester.user_id, words, limit + 1)
        results = []
        for entry in found[:limit]:
            result: dict[str, str] = {"user_id": entry.user_id}
            if entry.display_name:
                result["display_name"] = entry.display_name
            if entry.avatar_url:
                result["avatar_url"] = entry.avatar_url
            results.append(result)
        return json_response({"results": results, "limited": len(found) > limit})

    for prefix in CLIENT_PREFIXES:
        suffix = prefix.replace("/", "_")
        blueprint.add_route(search, f"{prefix}/search", methods=["POST"], name=f"search{suffix}")
        blueprint.add_route(user_directory_search, f"{prefix}/user_directory/search", methods=["POST"],
                            name=f"user_directory_search{suffix}")
