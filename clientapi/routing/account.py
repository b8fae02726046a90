"""POST /account/password and POST /account/deactivate.

Spec: data/api/client-server/registration.yaml (password, deactivate).
Both need interactive auth with the current password. Deactivation is for
good: the account loses its password, devices and profile, then leaves
every room it is in (and rejects its invites), as Synapse does.
"""

from __future__ import annotations

import logging

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.membership import send_membership
from clientapi.internal.password_auth import password_auth
from clientapi.internal.services import Services
from clientapi.internal.uia import request_purpose
from clientapi.routing import client_route
from clientapi.routing.register import MAX_PASSWORD_LENGTH
from common import errors
from common.http import json_response, parse_json_body

logger = logging.getLogger(__name__)


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def change_password(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        services.login_limiter.check(services.client_ip(request))
        body = parse_json_body(request)
        new_password = params.require_str(body, "new_password")
        log_out_devices = params.optional_bool(body, "logout_devices", default=True)
        if not new_password or len(new_password) > MAX_PASSWORD_LENGTH:
            raise errors.InvalidParam("Invalid password")
        refused = await password_auth(services, device, body,
                                      request_purpose(request.method, request.path, device.user_id))
        if refused is not None:
            return refused
        localpart = device.user_id[1:].split(":", 1)[0]
        await services.userapi.perform_password_update(ua_pb.PerformPasswordUpdateRequest(
            localpart=localpart, new_password=new_password, log_out_devices=log_out_devices,
            except_device_id=device.device_id))
        return json_response({})

    async def deactivate(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        services.login_limiter.check(services.client_ip(request))
        body = parse_json_body(request, allow_empty=True)
        refused = await password_auth(services, device, body,
                                      request_purpose(request.method, request.path, device.user_id))
        if refused is not None:
            return refused
        localpart = device.user_id[1:].split(":", 1)[0]
        await services.userapi.perform_account_deactivation(
            ua_pb.PerformAccountDeactivationRequest(localpart=localpart))
        rooms = await services.roomserver.query_rooms_for_user(rs_pb.QueryRoomsForUserRequest(
            user_id=device.user_id))
        for room_id in rooms.room_ids:
            try:
                await send_membership(services, room_id=room_id, sender=device.user_id, target=device.user_id,
                                      membership="leave")
            except errors.MatrixError as e:
                logger.info("deactivated %s could not leave %s: %s", device.user_id, room_id, e)
        return json_response({"id_server_unbind_result": "no-support"})

    client_route(blueprint, "/account/password", change_password, ["POST"], name="account_password")
    client_route(blueprint, "/account/deactivate", deactivate, ["POST"], name="account_deactivate")
