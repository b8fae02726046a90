"""Inbound EDUs (server-server-api "EDUs", "Typing Notifications",
"Receipts", "Presence", "Send-to-device messaging").

Each EDU of a ``/send`` transaction is handed to the handler its
``edu_type`` names in ``EDU_HANDLERS``; unknown types are ignored, as the
spec asks. The handlers check that what the EDU speaks for belongs to the
origin (the sender's server is the origin, and for typing and receipts that
the user is in the room and the room's ACL allows the origin), then append
to the same topics the client API writes local EDUs to, so the sync API
serves remote ones unchanged. A malformed EDU is dropped (logged): EDUs get
no per-item answer in the transaction response.

Other modules add their handlers to ``EDU_HANDLERS`` (device list and
signing key updates live with the keys code).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import Message
from myelin.clientapi.v1 import edu_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb

from common import errors
from common.topics import (
    CLIENTAPI_PRESENCE,
    CLIENTAPI_RECEIPT,
    CLIENTAPI_SEND_TO_DEVICE,
    CLIENTAPI_TYPING,
    Topic,
)
from federationapi.internal.access import RoomAccess
from federationapi.internal.context import FederationContext

logger = logging.getLogger(__name__)

EDUHandler = Callable[[FederationContext, str, dict[str, Any]], Awaitable[None]]

# Remote typing lasts this long unless renewed: federation carries no
# timeout, and Synapse expires remote typing after the same 30 s + grace.
FEDERATION_TYPING_TIMEOUT_MS = 60 * 1000
PRESENCE_STATES = ("online", "unavailable", "offline")
ALL_DEVICES = "*"
PUBLIC_RECEIPT_TYPES = ("m.read",)


class EDURefused(Exception):
    """The EDU (or one item of it) is malformed or not the origin's to send."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


def _require_str(content: dict[str, Any], key: str) -> str:
    value = content.get(key)
    if not isinstance(value, str) or not value:
        raise EDURefused(f"{key} must be a non-empty string")
    return value


def _check_sender(origin: str, user_id: str) -> None:
    if not user_id.startswith("@") or server_of(user_id) != origin:
        raise EDURefused(f"{user_id} does not belong to {origin}")


async def _append(context: FederationContext, topic: Topic, key: str, message: Message) -> None:
    if context.log is None:
        raise errors.Unavailable("this server does not take ephemeral data")
    await context.log.append(topic.name, key.encode(), message.SerializeToString())


async def _check_in_room(context: FederationContext, origin: str, room_id: str, user_id: str) -> None:
    """The room's ACL allows the origin and the user is joined."""
    try:
        await RoomAccess(context.roomserver).check_acl(room_id, origin)
    except errors.Forbidden as exc:
        raise EDURefused(str(exc)) from None
    membership = await context.roomserver.query_membership_for_user(
        rs_pb.QueryMembershipForUserRequest(room_id=room_id, user_id=user_id))
    if not membership.room_exists or not membership.is_in_room:
        raise EDURefused(f"{user_id} is not in {room_id}")


async def handle_typing(context: FederationContext, origin: str, content: dict[str, Any]) -> None:
    room_id = _require_str(content, "room_id")
    user_id = _require_str(content, "user_id")
    typing = content.get("typing")
    if not isinstance(typing, bool):
        raise EDURefused("typing must be a boolean")
    _check_sender(origin, user_id)
    await _check_in_room(context, origin, room_id, user_id)
    await _append(context, CLIENTAPI_TYPING, room_id, edu_log_pb2.TypingUpdate(
        room_id=room_id, user_id=user_id, typing=typing,
        timeout_ms=FEDERATION_TYPING_TIMEOUT_MS if typing else 0, sent_at_ms=_now_ms()))


async def handle_receipt(context: FederationContext, origin: str, content: dict[str, Any]) -> None:
    """``{room_id: {receipt_type: {user_id: {event_ids, data: {ts, thread_id?}}}}}``;
    each user's receipt is checked on its own, a bad one does not drop the rest."""
    for room_id, by_type in content.items():
        if not isinstance(by_type, dict):
            logger.info("receipt EDU from %s: room %r is not an object", origin, room_id)
            continue
        for receipt_type, by_user in by_type.items():
            # Private receipts are never federated; other types are unknown to us.
            if receipt_type not in PUBLIC_RECEIPT_TYPES or not isinstance(by_user, dict):
                continue
            for user_id, receipt in by_user.items():
                try:
                    await _handle_one_receipt(context, origin, room_id, receipt_type, user_id, receipt)
                except EDURefused as exc:
                    logger.info("receipt EDU from %s refused: %s", origin, exc)


async def _handle_one_receipt(context: FederationContext, origin: str, room_id: str, receipt_type: str,
                              user_id: str, receipt: Any) -> None:
    if not isinstance(receipt, dict):
        raise EDURefused("a receipt must be an object")
    event_ids = receipt.get("event_ids")
    if not isinstance(event_ids, list) or not event_ids or not all(isinstance(e, str) for e in event_ids):
        raise EDURefused("event_ids must be a non-empty list of strings")
    data = receipt.get("data")
    data = data if isinstance(data, dict) else {}
    ts = data.get("ts")
    ts_ms = ts if isinstance(ts, int) and not isinstance(ts, bool) else _now_ms()
    thread_id = data.get("thread_id")
    thread_id = thread_id if isinstance(thread_id, str) else ""
    _check_sender(origin, user_id)
    await _check_in_room(context, origin, room_id, user_id)
    for event_id in event_ids:
        await _append(context, CLIENTAPI_RECEIPT, room_id, edu_log_pb2.ReceiptUpdate(
            room_id=room_id, user_id=user_id, receipt_type=receipt_type, event_id=event_id,
            thread_id=thread_id, ts_ms=ts_ms))


async def handle_presence(context: FederationContext, origin: str, content: dict[str, Any]) -> None:
    push = content.get("push")
    if not isinstance(push, list):
        raise EDURefused("push must be a list")
    now = _now_ms()
    for item in push:
        try:
            if not isinstance(item, dict):
                raise EDURefused("a presence update must be an object")
            user_id = _require_str(item, "user_id")
            _check_sender(origin, user_id)
            presence = item.get("presence")
            if presence not in PRESENCE_STATES:
                raise EDURefused(f"unknown presence {presence!r}")
            ago = item.get("last_active_ago")
            ago_ms = ago if isinstance(ago, int) and not isinstance(ago, bool) and ago >= 0 else 0
            update = edu_log_pb2.PresenceUpdate(user_id=user_id, presence=presence, last_active_ts_ms=now - ago_ms)
            status_msg = item.get("status_msg")
            if isinstance(status_msg, str):
                update.status_msg = status_msg
            await _append(context, CLIENTAPI_PRESENCE, user_id, update)
        except EDURefused as exc:
            logger.info("presence EDU from %s refused: %s", origin, exc)


async def handle_direct_to_device(context: FederationContext, origin: str, content: dict[str, Any]) -> None:
    sender = _require_str(content, "sender")
    event_type = _require_str(content, "type")
    message_id = _require_str(content, "message_id")
    messages = content.get("messages")
    if not isinstance(messages, dict):
        raise EDURefused("messages must be an object")
    _check_sender(origin, sender)
    # Unique per (origin, message_id): a transaction retried with the same
    # EDU is stored once per target device.
    record_id = json.dumps(["federation", origin, message_id])
    for user_id, by_device in messages.items():
        if not isinstance(by_device, dict) or server_of(user_id) != context.server_name:
            logger.info("to-device EDU from %s: dropping the messages for %r", origin, user_id)
            continue
        for device_id in await _target_devices(context, user_id, list(by_device)):
            message = by_device.get(device_id, by_device.get(ALL_DEVICES))
            if not isinstance(message, dict):
                continue
            await _append(context, CLIENTAPI_SEND_TO_DEVICE, user_id, edu_log_pb2.ToDeviceMessage(
                sender=sender, sender_device_id="", target_user_id=user_id, target_device_id=device_id,
                event_type=event_type, content_json=json.dumps(message).encode(), message_id=record_id))


async def _target_devices(context: FederationContext, user_id: str, device_ids: list[str]) -> list[str]:
    if context.userapi is None:
        # Without the user API only named devices can be addressed.
        return [d for d in device_ids if d != ALL_DEVICES]
    try:
        answer = await context.userapi.query_devices(ua_pb.QueryDevicesRequest(user_id=user_id))
    except errors.NotFound:
        return []
    known = [d.device_id for d in answer.devices]
    if ALL_DEVICES in device_ids:
        return known
    return [d for d in device_ids if d in known]


# edu_type -> handler. Other modules register theirs here at import time
# (e.g. ``EDU_HANDLERS["m.device_list_update"] = handle_device_list_update``).
EDU_HANDLERS: dict[str, EDUHandler] = {
    "m.typing": handle_typing,
    "m.receipt": handle_receipt,
    "m.presence": handle_presence,
    "m.direct_to_device": handle_direct_to_device,
}


async def handle_edu(context: FederationContext, origin: str, edu: Any) -> None:
    """Dispatches one EDU of a transaction; never raises for bad input (an
    EDU has no answer to carry an error), only for a failure of ours."""
    if not isinstance(edu, dict):
        logger.info("EDU from %s is not an object", origin)
        return
    edu_type = edu.get("edu_type")
    content = edu.get("content")
    handler = EDU_HANDLERS.get(edu_type) if isinstance(edu_type, str) else None
    if handler is None:
        return
    if not isinstance(content, dict):
        logger.info("%s EDU from %s: content is not an object", edu_type, origin)
        return
    try:
        await handler(context, origin, content)
    except EDURefused as exc:
        logger.info("%s EDU from %s refused: %s", edu_type, origin, exc)
