"""Server-side key backup: /room_keys/version[/{version}] and
/room_keys/keys[/{roomId}[/{sessionId}]] (data/api/client-server/key_backup.yaml;
modules/end_to_end_encryption.md, "Server-side key backups").

The user API keeps the backups and applies the rules: keys are written only
to the current version (another live version: 403 M_WRONG_ROOM_KEYS_VERSION
with ``current_version``; an unknown one: 404 M_NOT_FOUND), a session's key
is replaced only by a better one, and the ``etag`` changes whenever the
backup's keys do.
"""

from __future__ import annotations

import json
from typing import Any

from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.http import json_response, parse_json_body

Action = ua_pb.PerformKeyBackupVersionRequest


def _version_json(found: ua_pb.KeyBackupVersion) -> dict[str, Any]:
    return {"version": found.version, "algorithm": found.algorithm,
            "auth_data": json.loads(found.auth_data_json or b"{}"), "etag": found.etag, "count": found.count}


def _query_version(request: Request) -> str:
    version = request.args.get("version")
    if not version:
        raise errors.MissingParam("Missing parameter: version")
    return str(version)


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def current_version(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        found = await services.userapi.query_key_backup_version(
            ua_pb.QueryKeyBackupVersionRequest(user_id=device.user_id))
        return json_response(_version_json(found))

    async def get_version(request: Request, version: str) -> HTTPResponse:
        device = await services.device_for(request)
        found = await services.userapi.query_key_backup_version(
            ua_pb.QueryKeyBackupVersionRequest(user_id=device.user_id, version=version))
        return json_response(_version_json(found))

    async def create_version(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request)
        algorithm = params.require_str(body, "algorithm")
        auth_data = params.optional_dict(body, "auth_data")
        if auth_data is None:
            raise errors.MissingParam("Missing parameter: auth_data")
        created = await services.userapi.perform_key_backup_version(Action(
            user_id=device.user_id, action=Action.CREATE, algorithm=algorithm,
            auth_data_json=json.dumps(auth_data).encode()))
        return json_response({"version": created.version})

    async def update_version(request: Request, version: str) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request)
        algorithm = params.require_str(body, "algorithm")
        auth_data = params.optional_dict(body, "auth_data")
        if auth_data is None:
            raise errors.MissingParam("Missing parameter: auth_data")
        in_body = params.optional_str(body, "version")
        if in_body is not None and in_body != version:
            raise errors.InvalidParam("Version in body does not match")
        await services.userapi.perform_key_backup_version(Action(
            user_id=device.user_id, action=Action.UPDATE, version=version, algorithm=algorithm,
            auth_data_json=json.dumps(auth_data).encode()))
        return json_response({})

    async def delete_version(request: Request, version: str) -> HTTPResponse:
        device = await services.device_for(request)
        await services.userapi.perform_key_backup_version(Action(
            user_id=device.user_id, action=Action.DELETE, version=version))
        return json_response({})

    async def put_keys(request: Request, room_id: str | None = None, session_id: str | None = None) -> HTTPResponse:
        device = await services.device_for(request)
        version = _query_version(request)
        body = parse_json_body(request)
        rooms: Any
        if room_id is None:
            rooms = body.get("rooms")
            if not isinstance(rooms, dict):
                raise errors.BadJSON("rooms must be an object")
        elif session_id is None:
            if not isinstance(body.get("sessions"), dict):
                raise errors.BadJSON("sessions must be an object")
            rooms = {room_id: {"sessions": body["sessions"]}}
        else:
            rooms = {room_id: {"sessions": {session_id: body}}}
        stored = await services.userapi.perform_key_backup_keys_upload(ua_pb.PerformKeyBackupKeysUploadRequest(
            user_id=device.user_id, version=version, rooms_json=json.dumps(rooms).encode()))
        return json_response({"etag": stored.etag, "count": stored.count})

    async def get_keys(request: Request, room_id: str | None = None, session_id: str | None = None) -> HTTPResponse:
        device = await services.device_for(request)
        version = _query_version(request)
        found = await services.userapi.query_key_backup_keys(ua_pb.KeyBackupKeysSelector(
            user_id=device.user_id, version=version, room_id=room_id or "", session_id=session_id or ""))
        rooms: dict[str, Any] = json.loads(found.rooms_json or b"{}")
        if room_id is None:
            return json_response({"rooms": rooms})
        sessions = rooms.get(room_id, {}).get("sessions", {})
        if session_id is None:
            return json_response({"sessions": sessions})
        if session_id not in sessions:
            raise errors.NotFound("No room_keys found")
        return json_response(sessions[session_id])

    async def delete_keys(request: Request, room_id: str | None = None,
                          session_id: str | None = None) -> HTTPResponse:
        device = await services.device_for(request)
        version = _query_version(request)
        deleted = await services.userapi.perform_key_backup_keys_deletion(ua_pb.KeyBackupKeysSelector(
            user_id=device.user_id, version=version, room_id=room_id or "", session_id=session_id or ""))
        return json_response({"etag": deleted.etag, "count": deleted.count})

    client_route(blueprint, "/room_keys/version", current_version, ["GET"], name="room_keys_version")
    client_route(blueprint, "/room_keys/version", create_version, ["POST"], name="room_keys_version_create")
    client_route(blueprint, "/room_keys/version/<version>", get_version, ["GET"], name="room_keys_version_get")
    client_route(blueprint, "/room_keys/version/<version>", update_version, ["PUT"], name="room_keys_version_put")
    client_route(blueprint, "/room_keys/version/<version>", delete_version, ["DELETE"],
                 name="room_keys_version_delete")
    for suffix, name in (("", "all"), ("/<room_id>", "room"), ("/<room_id>/<session_id>", "session")):
        client_route(blueprint, "/room_keys/keys" + suffix, put_keys, ["PUT"], name=f"room_keys_put_{name}")
        client_route(blueprint, "/room_keys/keys" + suffix, get_keys, ["GET"], name=f"room_keys_get_{name}")
        client_route(blueprint, "/room_keys/keys" + suffix, delete_keys, ["DELETE"], name=f"room_keys_delete_{name}")
