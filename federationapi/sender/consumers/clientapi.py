"""The federation sender's reader of the client API's EDU topics (and of
the user API's device list topic): local users' EDUs, queued for the
servers that should see them (server-server-api "EDUs").

- ``clientapi.typing``: ``m.typing`` to the room's other joined servers; a
  newer update for the same user and room replaces one not sent yet, and
  one not sent in time is dropped (typing is stale by then).
- ``clientapi.receipt``: public read receipts (``m.read``) as ``m.receipt``
  to the room's other joined servers; private receipts and read markers
  never leave the server.
- ``clientapi.presence``: ``m.presence`` to the servers sharing a room with
  the user; only the newest unsent one per user is kept.
- ``clientapi.send_to_device``: messages for remote users, one record per
  target device (or ``*``), as ``m.direct_to_device`` to the target's
  server; the records of one request are merged back into one EDU when the
  transaction is built.
- ``userapi.device_list_update``: ``m.device_list_update`` (device records)
  and ``m.signing_key_update`` (cross-signing records) to the servers
  sharing a room with the user.

The inbound side writes remote users' EDUs to the same topics; they are
skipped here (only local users' EDUs are sent). EDUs are at least once: a
replay after a crash may queue one again, which receivers tolerate
(typing, receipts and presence are states; to-device messages carry a
message ID receivers deduplicate by).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

from myelin.clientapi.v1 import edu_log_pb2
from myelin.userapi.v1 import device_list_log_pb2

from common.log import LogRecord
from common.topics import (
    CLIENTAPI_PRESENCE,
    CLIENTAPI_RECEIPT,
    CLIENTAPI_SEND_TO_DEVICE,
    CLIENTAPI_TYPING,
    USERAPI_DEVICE_LIST_UPDATE,
)
from federationapi.sender.consumers.roomserver import server_of
from federationapi.sender.queues import LAST_ACTIVE_TS, DestinationQueues
from federationapi.sender.storage import SenderDatabase

logger = logging.getLogger(__name__)

EDU_TOPICS = [CLIENTAPI_TYPING.name, CLIENTAPI_RECEIPT.name, CLIENTAPI_PRESENCE.name,
              CLIENTAPI_SEND_TO_DEVICE.name, USERAPI_DEVICE_LIST_UPDATE.name]
PUBLIC_RECEIPT_TYPE = "m.read"
# How long a "stopped typing" is worth delivering.
TYPING_STOP_TTL_MS = 30 * 1000
# The spec caps a to-device message ID at 32 code points.
MAX_MESSAGE_ID_LENGTH = 32


def _edu_json(edu_type: str, content: dict[str, Any]) -> str:
    return json.dumps({"edu_type": edu_type, "content": content}, separators=(",", ":"), ensure_ascii=False)


def wire_message_id(message_id: str) -> str:
    """A to-device message ID short enough for federation, the same for
    every record of one request."""
    if len(message_id) <= MAX_MESSAGE_ID_LENGTH:
        return message_id
    digest = hashlib.sha256(message_id.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")[:MAX_MESSAGE_ID_LENGTH]


def _json_object(raw: bytes) -> dict[str, Any] | None:
    if not raw:
        return None
    value = json.loads(raw)
    return value if isinstance(value, dict) else None


class EDUConsumer:
    def __init__(self, database: SenderDatabase, queues: DestinationQueues, server_name: str) -> None:
        self._db = database
        self._queues = queues
        self._server_name = server_name
        # The last status message each local user set (since this process started).
        self._status_msgs: dict[str, str] = {}

    def _is_local(self, user_id: str) -> bool:
        return server_of(user_id) == self._server_name

    async def handle_record(self, record: LogRecord) -> None:
        if record.topic == CLIENTAPI_TYPING.name:
            await self.on_typing(edu_log_pb2.TypingUpdate.FromString(record.value))
        elif record.topic == CLIENTAPI_RECEIPT.name:
            await self.on_receipt(edu_log_pb2.ReceiptUpdate.FromString(record.value))
        elif record.topic == CLIENTAPI_PRESENCE.name:
            await self.on_presence(edu_log_pb2.PresenceUpdate.FromString(record.value))
        elif record.topic == CLIENTAPI_SEND_TO_DEVICE.name:
            await self.on_to_device(edu_log_pb2.ToDeviceMessage.FromString(record.value))
        elif record.topic == USERAPI_DEVICE_LIST_UPDATE.name:
            await self.on_device_list_update(device_list_log_pb2.DeviceListUpdate.FromString(record.value))
        else:
            logger.warning("federation sender: skipping a record of unknown topic %r", record.topic)

    async def _queue(self, destinations: Iterable[str], edu_type: str, content: dict[str, Any], *,
                     coalesce_key: str | None = None, expires_ts: int | None = None) -> None:
        queued = await self._db.queue_edu(destinations, _edu_json(edu_type, content), coalesce_key=coalesce_key,
                                          expires_ts=expires_ts)
        self._queues.wake(queued)

    async def on_typing(self, msg: edu_log_pb2.TypingUpdate) -> None:
        if not self._is_local(msg.user_id):
            return
        servers = await self._db.servers_in_room(msg.room_id)
        expires = msg.sent_at_ms + (msg.timeout_ms if msg.typing else TYPING_STOP_TTL_MS)
        await self._queue(servers, "m.typing", {"room_id": msg.room_id, "user_id": msg.user_id,
                                                "typing": msg.typing},
                          coalesce_key=json.dumps(["typing", msg.room_id, msg.user_id]), expires_ts=expires)

    async def on_receipt(self, msg: edu_log_pb2.ReceiptUpdate) -> None:
        if msg.receipt_type != PUBLIC_RECEIPT_TYPE or not self._is_local(msg.user_id):
            return
        data: dict[str, Any] = {"ts": msg.ts_ms}
        if msg.thread_id:
            data["thread_id"] = msg.thread_id
        content = {msg.room_id: {PUBLIC_RECEIPT_TYPE: {msg.user_id: {"event_ids": [msg.event_id], "data": data}}}}
        servers = await self._db.servers_in_room(msg.room_id)
        await self._queue(servers, "m.receipt", content,
                          coalesce_key=json.dumps(["receipt", msg.room_id, msg.user_id, msg.thread_id]))

    async def on_presence(self, msg: edu_log_pb2.PresenceUpdate) -> None:
        if not self._is_local(msg.user_id):
            return
        item: dict[str, Any] = {"user_id": msg.user_id, "presence": msg.presence,
                                LAST_ACTIVE_TS: msg.last_active_ts_ms}
        # An update without a status message keeps the user's (receivers
        # take a missing one as none): the last one set is sent again.
        if msg.HasField("status_msg"):
            self._status_msgs[msg.user_id] = msg.status_msg
        status_msg = self._status_msgs.get(msg.user_id)
        if status_msg:
            item["status_msg"] = status_msg
        servers = await self._db.servers_sharing_rooms_with(msg.user_id)
        await self._queue(servers, "m.presence", {"push": [item]},
                          coalesce_key=json.dumps(["presence", msg.user_id]))

    async def on_to_device(self, msg: edu_log_pb2.ToDeviceMessage) -> None:
        destination = server_of(msg.target_user_id)
        if not self._is_local(msg.sender) or not destination or destination == self._server_name:
            return
        message = _json_object(msg.content_json) or {}
        content = {"sender": msg.sender, "type": msg.event_type, "message_id": wire_message_id(msg.message_id),
                   "messages": {msg.target_user_id: {msg.target_device_id: message}}}
        await self._queue([destination], "m.direct_to_device", content)

    async def on_device_list_update(self, msg: device_list_log_pb2.DeviceListUpdate) -> None:
        if not msg.origin_local or not self._is_local(msg.user_id):
            return
        servers = await self._db.servers_sharing_rooms_with(msg.user_id)
        if msg.kind == device_list_log_pb2.DeviceListUpdate.DEVICE:
            content: dict[str, Any] = {"user_id": msg.user_id, "device_id": msg.device_id,
                                       "stream_id": msg.stream_id, "prev_id": list(msg.prev_ids),
                                       "deleted": msg.deleted}
            if msg.device_display_name:
                content["device_display_name"] = msg.device_display_name
            keys = _json_object(msg.device_keys_json)
            if keys is not None and not msg.deleted:
                content["keys"] = keys
            await self._queue(servers, "m.device_list_update", content)
        elif msg.kind == device_list_log_pb2.DeviceListUpdate.SIGNING_KEYS:
            content = {"user_id": msg.user_id}
            master = _json_object(msg.master_key_json)
            self_signing = _json_object(msg.self_signing_key_json)
            if master is not None:
                content["master_key"] = master
            if self_signing is not None:
                content["self_signing_key"] = self_signing
            await self._queue(servers, "m.signing_key_update", content,
                              coalesce_key=json.dumps(["signing_keys", msg.user_id]))
