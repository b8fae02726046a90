"""GET /devices, GET /devices/{deviceId}, DELETE /devices/{deviceId} and
POST /delete_devices.

Spec: data/api/client-server/device_management.yaml. Deleting devices
needs interactive auth with the account's password (m.login.password),
as Synapse asks; the session is bound to the user and the devices.
"""

from __future__ import annotations

from typing import Any

from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.services import Services
from clientapi.internal.uia import PASSWORD
from clientapi.routing import client_route
from clientapi.routing.login import localpart_of
from common import errors
from common.http import json_response, parse_json_body


def _device_json(found: ua_pb.Device) -> dict[str, Any]:
    out: dict[str, Any] = {"device_id": found.device_id}
    if found.display_name:
        out["display_name"] = found.display_name
    if found.last_seen_ts:
        out["last_seen_ts"] = found.last_seen_ts
    if found.last_seen_ip:
        out["last_seen_ip"] = found.last_seen_ip
    return out


async def _password_auth(services: Services, device: ua_pb.Device, body: dict[str, Any],
                         purpose: str) -> HTTPResponse | None:
    """None when ``body.auth`` proves the caller knows the password; the
    401 answer (the flow, or a failed stage) otherwise."""
    auth = params.optional_dict(body, "auth")
    if auth is None:
        return json_response(services.sessions.challenge(stage=PASSWORD, purpose=purpose), status=401)
    session = params.optional_str(auth, "session")
    if session is not None and not services.sessions.is_valid(session, purpose):
        raise errors.MatrixError("Unknown session ID", http_status=400)
    session = session or services.sessions.new_session(purpose)
    auth_type = params.optional_str(auth, "type")
    if auth_type != PASSWORD:
        return json_response({**services.sessions.challenge(session, stage=PASSWORD, purpose=purpose),
                              "errcode": "M_UNRECOGNIZED", "error": f"Unsupported auth type {auth_type!r}"},
                             status=401)
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
        return json_response({**services.sessions.challenge(session, stage=PASSWORD, purpose=purpose),
                              "errcode": "M_FORBIDDEN", "error": "Invalid password"}, status=401)
    return None


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def list_devices(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        answer = await services.userapi.query_devices(ua_pb.QueryDevicesRequest(user_id=device.user_id))
        return json_response({"devices": [_device_json(d) for d in answer.devices]})

    async def get_device(request: Request, device_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        answer = await services.userapi.query_devices(ua_pb.QueryDevicesRequest(user_id=device.user_id))
        for found in answer.devices:
            if found.device_id == device_id:
                return json_response(_device_json(found))
        raise errors.NotFound("Device not found")

    async def delete(request: Request, device: ua_pb.Device, body: dict[str, Any],
                     device_ids: list[str]) -> HTTPResponse:
        purpose = "delete_devices\n" + device.user_id + "\n" + "\n".join(sorted(set(device_ids)))
        services.login_limiter.check(services.client_ip(request))
        refused = await _password_auth(services, device, body, purpose)
        if refused is not None:
            return refused
        if device_ids:
            await services.userapi.perform_device_deletion(
                ua_pb.PerformDeviceDeletionRequest(user_id=device.user_id, device_ids=device_ids))
        return json_response({})

    async def delete_device(request: Request, device_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request, allow_empty=True)
        answer = await services.userapi.query_devices(ua_pb.QueryDevicesRequest(user_id=device.user_id))
        if device_id not in {d.device_id for d in answer.devices}:
            raise errors.NotFound("Device not found")
        return await delete(request, device, body, [device_id])

    async def delete_devices(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request)
        device_ids = params.optional_str_list(body, "devices")
        if "devices" not in body:
            raise errors.MissingParam("Missing parameter: devices")
        return await delete(request, device, body, device_ids)

    client_route(blueprint, "/devices", list_devices, ["GET"], name="list_devices")
    client_route(blueprint, "/devices/<device_id>", get_device, ["GET"], name="get_device")
    client_route(blueprint, "/devices/<device_id>", delete_device, ["DELETE"], name="delete_device")
    client_route(blueprint, "/delete_devices", delete_devices, ["POST"], name="delete_devices")
