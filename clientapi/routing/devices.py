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
from clientapi.internal.password_auth import password_auth
from clientapi.internal.services import Services
from clientapi.internal.uia import request_purpose
from clientapi.routing import client_route
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
        purpose = request_purpose(request.method, request.path, device.user_id, *sorted(set(device_ids)))
        services.login_limiter.check(services.client_ip(request))
        refused = await password_auth(services, device, body, purpose)
        if refused is not None:
            return refused
        if device_ids:
            await services.userapi.perform_device_deletion(
                ua_pb.PerformDeviceDeletionRequest(user_id=device.user_id, device_ids=device_ids))
        return json_response({})

    async def update_device(request: Request, device_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request, allow_empty=True)
        display_name = params.optional_str(body, "display_name")
        update = ua_pb.PerformDeviceUpdateRequest(user_id=device.user_id, device_id=device_id)
        if display_name is not None:
            update.display_name = display_name
        await services.userapi.perform_device_update(update)
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
    client_route(blueprint, "/devices/<device_id>", update_device, ["PUT"], name="update_device")
    client_route(blueprint, "/devices/<device_id>", delete_device, ["DELETE"], name="delete_device")
    client_route(blueprint, "/delete_devices", delete_devices, ["POST"], name="delete_devices")
