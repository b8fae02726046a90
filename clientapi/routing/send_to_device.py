"""PUT /sendToDevice/{eventType}/{txnId} (data/api/client-server/to_device.yaml,
content/client-server-api/modules/send_to_device.md).

``messages`` maps user IDs to device IDs (or ``*``, every device of the
user) to the content. Each target device gets one record on
``clientapi.send_to_device``; the sync API puts it in the device's inbox.
Messages for remote users are written as named (one record per device ID
or ``*``) for the federation sender; the sync API keeps only local users'.
Messages to unknown local users or devices are dropped.

The request is idempotent per (device, event type, transaction ID): a retry
is answered without sending again, and the records carry a message ID that
the sync API stores once per target device.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from myelin.clientapi.v1 import edu_log_pb2
from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.services import Services
from clientapi.producers import produce_to_device
from clientapi.routing import client_route
from common import errors
from common.http import json_response, parse_json_body

logger = logging.getLogger(__name__)

ALL_DEVICES = "*"


def _messages(body: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    messages = body.get("messages")
    if messages is None:
        raise errors.MissingParam("Missing parameter: messages")
    if not isinstance(messages, dict):
        raise errors.BadJSON("messages must be an object")
    for user_id, devices in messages.items():
        if not isinstance(devices, dict):
            raise errors.BadJSON(f"messages[{user_id!r}] must be an object")
        for device_id, content in devices.items():
            if not isinstance(content, dict):
                raise errors.BadJSON(f"messages[{user_id!r}][{device_id!r}] must be an object")
    return messages


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def target_devices(user_id: str, device_ids: list[str]) -> list[str]:
        """The user's devices the request names (all of them for ``*``)."""
        answer = await services.userapi.query_devices(ua_pb.QueryDevicesRequest(user_id=user_id))
        known = [d.device_id for d in answer.devices]
        if ALL_DEVICES in device_ids:
            return known
        return [d for d in device_ids if d in known]

    async def send_to_device(request: Request, event_type: str, txn_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        messages = _messages(parse_json_body(request))
        key = (device.user_id, device.device_id, f"sendToDevice/{event_type}", txn_id)
        async with services.transaction_lock(*key):
            if key in services.completed_transactions:
                return json_response({})
            if await services.database.get_transaction(*key) is not None:
                return json_response({})
            message_id = json.dumps([device.user_id, device.device_id, event_type, txn_id])
            suffix = ":" + services.server_name
            for user_id, by_device in messages.items():
                if not user_id.endswith(suffix):
                    # A remote user's devices are known to their server: one
                    # record per device named (or "*"), for the federation sender.
                    for device_id, content in by_device.items():
                        await produce_to_device(services.log, edu_log_pb2.ToDeviceMessage(
                            sender=device.user_id, sender_device_id=device.device_id, target_user_id=user_id,
                            target_device_id=device_id, event_type=event_type,
                            content_json=json.dumps(content).encode(), message_id=message_id))
                    continue
                for device_id in await target_devices(user_id, list(by_device)):
                    content = by_device.get(device_id, by_device.get(ALL_DEVICES, {}))
                    await produce_to_device(services.log, edu_log_pb2.ToDeviceMessage(
                        sender=device.user_id, sender_device_id=device.device_id, target_user_id=user_id,
                        target_device_id=device_id, event_type=event_type,
                        content_json=json.dumps(content).encode(), message_id=message_id))
            await services.database.store_transaction(*key, "")
            services.transaction_done(key, "")
        return json_response({})

    client_route(blueprint, "/sendToDevice/<event_type>/<txn_id>", send_to_device, ["PUT"],
                 name="send_to_device")
