"""Account data and room tags.

GET/PUT /user/{userId}/account_data/{type},
GET/PUT /user/{userId}/rooms/{roomId}/account_data/{type},
GET /user/{userId}/rooms/{roomId}/tags, PUT/DELETE .../tags/{tag}.

Spec: data/api/client-server/account-data.yaml, tags.yaml;
content/client-server-api/modules/account_data.md, tags.md, ignore_users.md.
Stored by the user API, which publishes each change for /sync. Only the
owner may read or write (403 otherwise); ``m.fully_read`` and
``m.push_rules`` are the server's to write (405 M_BAD_JSON: read markers
and the push rule API set them). Tags are the room's ``m.tag`` account data.
"""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from typing import Any

from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.http import json_response, parse_json_body
from common.keyed_locks import KeyedLocks
from matrixlib import push_rules
from matrixlib.ids import is_valid_room_id

PUSH_RULES = "m.push_rules"
SERVER_CONTROLLED = ("m.fully_read", PUSH_RULES)
TAG = "m.tag"
IGNORED_USER_LIST = "m.ignored_user_list"
# Synapse's limit on a tag's name.
MAX_TAG_LENGTH = 255

# user ID -> [lock, how many requests hold or await it]
_user_locks: KeyedLocks[str] = KeyedLocks()


def account_data_lock(user_id: str) -> AbstractAsyncContextManager[None]:
    """Serialises this process's read-modify-writes of one user's account
    data (tags, push rules), so two concurrent edits do not lose one."""
    return _user_locks.hold(user_id)


def check_room_id(room_id: str) -> None:
    if not is_valid_room_id(room_id):
        raise errors.InvalidParam(f"{room_id!r} is not a valid room ID")


async def read_account_data(services: Services, user_id: str, room_id: str, data_type: str
                            ) -> dict[str, Any] | None:
    """The content, or None when unset."""
    try:
        answer = await services.userapi.query_account_data(
            ua_pb.QueryAccountDataRequest(user_id=user_id, room_id=room_id, type=data_type))
    except errors.NotFound:
        return None
    for found in answer.account_data:
        content = json.loads(found.content_json)
        if isinstance(content, dict):
            return content
    return None


async def write_account_data(services: Services, user_id: str, room_id: str, data_type: str,
                             content: dict[str, Any]) -> None:
    await services.userapi.perform_account_data_update(ua_pb.AccountData(
        user_id=user_id, room_id=room_id, type=data_type,
        content_json=json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()))


def _check_writable(data_type: str) -> None:
    if data_type in SERVER_CONTROLLED:
        raise errors.BadJSON(f"Cannot set {data_type} through this API.", http_status=405)


def _check_content(user_id: str, data_type: str, content: dict[str, Any]) -> None:
    if data_type == IGNORED_USER_LIST:
        ignored = content.get("ignored_users", {})
        if not isinstance(ignored, dict) or not all(
                isinstance(u, str) and u.startswith("@") and ":" in u for u in ignored):
            raise errors.BadJSON("ignored_users must be an object keyed by user IDs")
        if user_id in ignored:
            # As Synapse: ignoring oneself would hide one's own events.
            raise errors.InvalidParam("You cannot ignore yourself")


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def owner(request: Request, user_id: str, verb: str) -> None:
        device = await services.device_for(request)
        if device.user_id != user_id:
            raise errors.Forbidden(f"Cannot {verb} account data for other users.")

    async def get_global(request: Request, user_id: str, data_type: str) -> HTTPResponse:
        await owner(request, user_id, "get")
        content = await read_account_data(services, user_id, "", data_type)
        if data_type == PUSH_RULES:
            # The rules in force, as Synapse answers: also before any change
            # was stored, and with today's server-default rules.
            stored = (content or {}).get("global")
            return json_response({"global": push_rules.merge_with_defaults(
                stored if isinstance(stored, dict) else None, user_id)})
        if content is None:
            raise errors.NotFound("Account data not found")
        return json_response(content)

    async def put_global(request: Request, user_id: str, data_type: str) -> HTTPResponse:
        await owner(request, user_id, "add")
        content = parse_json_body(request)
        _check_writable(data_type)
        _check_content(user_id, data_type, content)
        await write_account_data(services, user_id, "", data_type, content)
        return json_response({})

    async def get_room(request: Request, user_id: str, room_id: str, data_type: str) -> HTTPResponse:
        await owner(request, user_id, "get")
        check_room_id(room_id)
        content = await read_account_data(services, user_id, room_id, data_type)
        if content is None:
            raise errors.NotFound("Room account data not found")
        return json_response(content)

    async def put_room(request: Request, user_id: str, room_id: str, data_type: str) -> HTTPResponse:
        await owner(request, user_id, "add")
        check_room_id(room_id)
        content = parse_json_body(request)
        _check_writable(data_type)
        await write_account_data(services, user_id, room_id, data_type, content)
        return json_response({})

    async def get_tags(request: Request, user_id: str, room_id: str) -> HTTPResponse:
        await owner(request, user_id, "get")
        check_room_id(room_id)
        content = await read_account_data(services, user_id, room_id, TAG) or {}
        tags = content.get("tags")
        return json_response({"tags": tags if isinstance(tags, dict) else {}})

    async def put_tag(request: Request, user_id: str, room_id: str, tag: str) -> HTTPResponse:
        await owner(request, user_id, "add")
        check_room_id(room_id)
        body = parse_json_body(request)
        if not tag or len(tag) > MAX_TAG_LENGTH:
            raise errors.InvalidParam("Invalid tag")
        order = body.get("order")
        if order is not None and (isinstance(order, bool) or not isinstance(order, (int, float))):
            raise errors.BadJSON("order must be a number")
        async with account_data_lock(user_id):
            content = await read_account_data(services, user_id, room_id, TAG) or {}
            tags = content.get("tags")
            tags = dict(tags) if isinstance(tags, dict) else {}
            tags[tag] = body
            await write_account_data(services, user_id, room_id, TAG, {**content, "tags": tags})
        return json_response({})

    async def delete_tag(request: Request, user_id: str, room_id: str, tag: str) -> HTTPResponse:
        await owner(request, user_id, "remove")
        check_room_id(room_id)
        async with account_data_lock(user_id):
            content = await read_account_data(services, user_id, room_id, TAG) or {}
            tags = content.get("tags")
            tags = dict(tags) if isinstance(tags, dict) else {}
            # Removing a tag that is not there succeeds (as Synapse).
            tags.pop(tag, None)
            await write_account_data(services, user_id, room_id, TAG, {**content, "tags": tags})
        return json_response({})

    client_route(blueprint, "/user/<user_id>/account_data/<data_type>", get_global, ["GET"],
                 name="account_data_get")
    client_route(blueprint, "/user/<user_id>/account_data/<data_type>", put_global, ["PUT"],
                 name="account_data_put")
    client_route(blueprint, "/user/<user_id>/rooms/<room_id>/account_data/<data_type>", get_room, ["GET"],
                 name="room_account_data_get")
    client_route(blueprint, "/user/<user_id>/rooms/<room_id>/account_data/<data_type>", put_room, ["PUT"],
                 name="room_account_data_put")
    client_route(blueprint, "/user/<user_id>/rooms/<room_id>/tags", get_tags, ["GET"], name="tags_get")
    client_route(blueprint, "/user/<user_id>/rooms/<room_id>/tags/<tag>", put_tag, ["PUT"], name="tag_put")
    client_route(blueprint, "/user/<user_id>/rooms/<room_id>/tags/<tag>", delete_tag, ["DELETE"],
                 name="tag_delete")
