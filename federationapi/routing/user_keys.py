"""POST /_matrix/federation/v1/user/keys/query, POST /v1/user/keys/claim and
GET /v1/user/devices/{userId} (data/api/server-server/user_keys.yaml,
user_devices.yaml): this server's users' keys and device lists, from the user
API. Users of other servers in a request are left out; user-signing keys are
never given to other servers."""

from __future__ import annotations

import json
from typing import Any, Protocol

from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response, parse_json_body
from matrixlib.ids import is_valid_user_id

V1 = "/_matrix/federation/v1"


class UserKeysAPI(Protocol):
    """The part of the user API these endpoints read."""

    async def query_keys(self, req: ua_pb.QueryKeysRequest) -> ua_pb.QueryKeysResponse: ...

    async def perform_claim_keys(self, req: ua_pb.PerformClaimKeysRequest) -> ua_pb.PerformClaimKeysResponse: ...

    async def query_user_devices(self, req: ua_pb.QueryUserDevicesRequest) -> ua_pb.UserDevices: ...


def _users(body: dict[str, Any], field: str, server_name: str) -> dict[str, Any]:
    value = body.get(field)
    if not isinstance(value, dict):
        raise errors.BadJSON(f"{field} must be an object")
    return {u: v for u, v in value.items() if isinstance(u, str) and is_valid_user_id(u)
            and u.partition(":")[2] == server_name}


def add_user_keys_routes(blueprint: Blueprint, server_name: str, userapi: UserKeysAPI) -> None:
    async def query_keys(request: Request) -> HTTPResponse:
        wanted = _users(parse_json_body(request), "device_keys", server_name)
        users = []
        for user_id, device_ids in wanted.items():
            if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
                raise errors.BadJSON("device_keys must map user IDs to lists of device IDs")
            users.append(ua_pb.UserDeviceIds(user_id=user_id, device_ids=device_ids))
        result: dict[str, Any] = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        if users:
            answer = await userapi.query_keys(ua_pb.QueryKeysRequest(users=users))
            result["device_keys"] = json.loads(answer.device_keys_json or b"{}")
            result["master_keys"] = json.loads(answer.master_keys_json or b"{}")
            result["self_signing_keys"] = json.loads(answer.self_signing_keys_json or b"{}")
        return json_response(result)

    async def claim_keys(request: Request) -> HTTPResponse:
        wanted = _users(parse_json_body(request), "one_time_keys", server_name)
        claims = []
        for user_id, by_device in wanted.items():
            if not isinstance(by_device, dict) or not all(isinstance(a, str) for a in by_device.values()):
                raise errors.BadJSON("one_time_keys must map users to devices to algorithms")
            claims += [ua_pb.KeyClaim(user_id=user_id, device_id=d, algorithm=a) for d, a in by_device.items()]
        one_time_keys: dict[str, Any] = {}
        if claims:
            answer = await userapi.perform_claim_keys(ua_pb.PerformClaimKeysRequest(claims=claims))
            one_time_keys = json.loads(answer.one_time_keys_json or b"{}")
        return json_response({"one_time_keys": one_time_keys})

    async def user_devices(request: Request, user_id: str) -> HTTPResponse:
        if not is_valid_user_id(user_id) or user_id.partition(":")[2] != server_name:
            raise errors.InvalidParam("The user is not hosted on this homeserver")
        answer = await userapi.query_user_devices(ua_pb.QueryUserDevicesRequest(user_id=user_id))
        body: dict[str, Any] = {"user_id": user_id, "stream_id": answer.stream_id,
                                "devices": json.loads(answer.devices_json or b"[]")}
        if answer.master_key_json:
            body["master_key"] = json.loads(answer.master_key_json)
        if answer.self_signing_key_json:
            body["self_signing_key"] = json.loads(answer.self_signing_key_json)
        return json_response(body)

    blueprint.add_route(query_keys, f"{V1}/user/keys/query", methods=["POST"], name="user_keys_query")
    blueprint.add_route(claim_keys, f"{V1}/user/keys/claim", methods=["POST"], name="user_keys_claim")
    blueprint.add_route(user_devices, f"{V1}/user/devices/<user_id>", methods=["GET"], name="user_devices",
                        unquote=True)
