"""POST /rooms/{roomId}/receipt/{receiptType}/{eventId} and
POST /rooms/{roomId}/read_markers (data/api/client-server/receipts.yaml,
read_markers.yaml).

Receipts are m.read, m.read.private (seen only by their owner) and, as the
spec allows, m.fully_read (the read marker, as /read_markers sets it). The
user must be joined to the room and the event must be one of the room's
(404 otherwise). A ``thread_id`` ("main" or a thread root's event ID) makes
a receipt threaded; read markers are never threaded.

A read marker is the room account data m.fully_read, stored by the user
API, which publishes it on ``userapi.account_data`` for /sync like any other
account data. Receipts go to ``clientapi.receipt``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from myelin.clientapi.v1 import edu_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.membership import current_membership
from clientapi.internal.services import Services
from clientapi.producers import produce_receipt
from clientapi.routing import client_route
from common import errors
from common.http import json_response, parse_json_body

READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = (READ, READ_PRIVATE, FULLY_READ)


async def _check_room_and_events(services: Services, room_id: str, user_id: str, event_ids: set[str]) -> None:
    membership = await current_membership(services, room_id, user_id)
    if membership.membership != "join":
        raise errors.Forbidden(f"{user_id} is not in room {room_id}")
    for event_id in event_ids:
        if not event_id.startswith("$"):
            raise errors.InvalidParam(f"not an event ID: {event_id!r}")
    found = await services.roomserver.query_events_by_id(rs_pb.QueryEventsByIDRequest(event_ids=sorted(event_ids)))
    in_room = {e.event_id for e in found.events if _room_of(e.pdu_json) == room_id}
    missing = event_ids - in_room
    if missing:
        raise errors.NotFound(f"Unknown event {sorted(missing)[0]} in room {room_id}")


def _room_of(pdu_json: bytes) -> str | None:
    try:
        value = json.loads(pdu_json).get("room_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _receipt(room_id: str, user_id: str, receipt_type: str, event_id: str, thread_id: str = ""
             ) -> edu_log_pb2.ReceiptUpdate:
    return edu_log_pb2.ReceiptUpdate(room_id=room_id, user_id=user_id, receipt_type=receipt_type,
                                     event_id=event_id, thread_id=thread_id, ts_ms=int(time.time() * 1000))


async def _send(services: Services, receipt: edu_log_pb2.ReceiptUpdate) -> None:
    if receipt.receipt_type == FULLY_READ:
        await services.userapi.perform_account_data_update(ua_pb.AccountData(
            user_id=receipt.user_id, room_id=receipt.room_id, type=FULLY_READ,
            content_json=json.dumps({"event_id": receipt.event_id}).encode()))
        return
    await produce_receipt(services.log, receipt)


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def post_receipt(request: Request, room_id: str, receipt_type: str, event_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        if receipt_type not in RECEIPT_TYPES:
            raise errors.InvalidParam(f"receipt type must be one of {', '.join(RECEIPT_TYPES)}")
        body: dict[str, Any] = parse_json_body(request, allow_empty=True)
        thread_id = ""
        if "thread_id" in body:
            value = body["thread_id"]
            if not isinstance(value, str) or not value:
                raise errors.InvalidParam("thread_id must be a non-empty string")
            if receipt_type == FULLY_READ:
                raise errors.InvalidParam("m.fully_read cannot be threaded")
            if value != "main" and not value.startswith("$"):
                raise errors.InvalidParam("thread_id must be main or an event ID")
            thread_id = value
        await _check_room_and_events(services, room_id, device.user_id, {event_id})
        await _send(services, _receipt(room_id, device.user_id, receipt_type, event_id, thread_id))
        return json_response({})

    async def post_read_markers(request: Request, room_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        body: dict[str, Any] = parse_json_body(request)
        markers: dict[str, str] = {}
        for key in RECEIPT_TYPES:
            value = body.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise errors.BadJSON(f"{key} must be an event ID")
            markers[key] = value
        await _check_room_and_events(services, room_id, device.user_id, set(markers.values()))
        # The read marker last: a client showing it expects the receipts it implies.
        for key in (READ, READ_PRIVATE, FULLY_READ):
            if key in markers:
                await _send(services, _receipt(room_id, device.user_id, key, markers[key]))
        return json_response({})

    client_route(blueprint, "/rooms/<room_id>/receipt/<receipt_type>/<event_id>", post_receipt, ["POST"],
                 name="post_receipt")
    client_route(blueprint, "/rooms/<room_id>/read_markers", post_read_markers, ["POST"],
                 name="post_read_markers")
