"""PUT /rooms/{roomId}/send/{eventType}/{txnId} and
PUT /rooms/{roomId}/state/{eventType}[/{stateKey}].

Spec: data/api/client-server/room_send.yaml, room_state.yaml. A send is
idempotent per device and transaction ID: a retry answers the first event
ID (clientapi_transactions). Every sent event carries the sender's
TransactionID in its InputRoomEvent, so /sync can echo
``unsigned.transaction_id``.
"""

from __future__ import annotations

from typing import Any

from myelin.roomserver.v1 import events_pb2
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.eventbuilder import MAX_PDU_BYTES, build_local_event
from common.http import json_response, parse_json_body
from matrixlib.events import REDACTION


def _content_of(request: Request) -> dict[str, Any]:
    if len(request.body or b"") > MAX_PDU_BYTES:
        # The content alone is over the limit of the whole event.
        raise errors.TooLarge(f"event content over {MAX_PDU_BYTES} bytes")
    return parse_json_body(request)


async def _send(services: Services, *, room_id: str, sender: str, type: str, content: dict[str, Any],
                state_key: str | None, txn: events_pb2.TransactionID | None) -> str:
    if not room_id.startswith("!"):
        raise errors.InvalidParam(f"not a room ID: {room_id!r}")
    redacts = content.get("redacts") if type == REDACTION else None
    try:
        event = await build_local_event(
            services.roomserver, room_id=room_id, type=type, sender=sender, content=content,
            state_key=state_key, server_name=services.server_name, signing_key=services.signing_key,
            redacts=redacts if isinstance(redacts, str) else None)
    except errors.NotFound:
        # Do not tell outsiders which rooms exist.
        raise errors.Forbidden(f"{sender} is not in room {room_id}") from None
    await services.input_events([event], txn=txn)
    return event.event_id


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def send_message(request: Request, room_id: str, event_type: str, txn_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        content = _content_of(request)
        endpoint = f"send/{room_id}/{event_type}"
        async with services.transaction_lock(device.user_id, device.device_id, endpoint, txn_id):
            earlier = await services.database.get_transaction(device.user_id, device.device_id, endpoint, txn_id)
            if earlier is not None:
                return json_response({"event_id": earlier})
            services.send_limiter.check(device.user_id)
            event_id = await _send(
                services, room_id=room_id, sender=device.user_id, type=event_type, content=content,
                state_key=None, txn=events_pb2.TransactionID(
                    user_id=device.user_id, device_id=device.device_id, transaction_id=txn_id))
            await services.database.store_transaction(device.user_id, device.device_id, endpoint, txn_id,
                                                      event_id)
        return json_response({"event_id": event_id})

    async def put_state(request: Request, room_id: str, event_type: str, state_key: str = "") -> HTTPResponse:
        device = await services.device_for(request)
        content = _content_of(request)
        services.send_limiter.check(device.user_id)
        event_id = await _send(services, room_id=room_id, sender=device.user_id, type=event_type,
                               content=content, state_key=state_key, txn=None)
        return json_response({"event_id": event_id})

    client_route(blueprint, "/rooms/<room_id>/send/<event_type>/<txn_id>", send_message, ["PUT"],
                 name="send_message")
    client_route(blueprint, "/rooms/<room_id>/state/<event_type>/<state_key>", put_state, ["PUT"],
                 name="put_state")
    client_route(blueprint, "/rooms/<room_id>/state/<event_type>", put_state, ["PUT"],
                 name="put_state_empty_key")
