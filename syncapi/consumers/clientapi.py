"""Consumes the client API's EDU topics (``edu_log.proto``) into the sync
API's read model, and wakes the users each change concerns:

- ``clientapi.typing``: the in-memory typing cache; wakes the room's local members.
- ``clientapi.receipt``: syncapi_receipts; a public receipt wakes the room's
  local members, a private one (m.read.private) only its owner. Read
  markers (m.fully_read) are account data, served from the user API's log:
  such a receipt is ignored.
- ``clientapi.presence``: syncapi_presence; a change of presence or status
  message wakes everyone sharing a room with the user. A write that only
  moves ``last_active_ts`` on (a syncing client's periodic refresh) wakes
  nobody: others get it with their next news, as Synapse keeps
  ``currently_active`` without a push for every sign of life.
- ``clientapi.send_to_device``: the target device's inbox; wakes its user.

Handling is idempotent (a replayed record changes nothing), so the offsets
are committed after handling like the room-event consumer's.
"""

from __future__ import annotations

import asyncio
import logging

from myelin.clientapi.v1 import edu_log_pb2

from common.consumer import KeyedConsumerRunner, run_consumer
from common.log import Log, LogRecord, PositionLost
from common.topics import CLIENTAPI_PRESENCE, CLIENTAPI_RECEIPT, CLIENTAPI_SEND_TO_DEVICE, CLIENTAPI_TYPING
from syncapi.internal.typing import TypingCache
from syncapi.notifier import Notifier
from syncapi.storage.database import SyncDatabase
from syncapi.storage.tables.receipts import FULLY_READ, READ_PRIVATE

logger = logging.getLogger(__name__)

CONSUMER_GROUP = "syncapi.clientapi"
TOPICS = [CLIENTAPI_TYPING.name, CLIENTAPI_RECEIPT.name, CLIENTAPI_PRESENCE.name, CLIENTAPI_SEND_TO_DEVICE.name]
MAX_ATTEMPTS = 3
CONCURRENCY = 8
STOP_TIMEOUT = 10.0


class ClientAPIConsumer:
    def __init__(self, database: SyncDatabase, notifier: Notifier, typing: TypingCache,
                 server_name: str) -> None:
        self._db = database
        self._notifier = notifier
        self._typing = typing
        self._server_name = server_name

    async def run(self, log: Log, ready: asyncio.Event | None = None) -> None:
        """Follows the topics until cancelled; sets ``ready`` once consuming."""
        runner = KeyedConsumerRunner(log, CONSUMER_GROUP, TOPICS, self.handle_record,
                                     on_position_lost=self._on_position_lost, concurrency=CONCURRENCY)
        await run_consumer(runner, ready, stop_timeout=STOP_TIMEOUT)

    async def _on_position_lost(self, lost: PositionLost) -> None:
        # Ephemeral data: what retention dropped is simply gone.
        logger.warning("client API EDU position lost (%s): going on from the oldest record kept", lost)

    async def handle_record(self, record: LogRecord) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                await self.handle(record.topic, record.value)
                return
            except Exception:
                if attempt == MAX_ATTEMPTS:
                    raise
                logger.warning("EDU record %s/%d@%d failed, retrying", record.topic, record.partition,
                               record.offset, exc_info=True)
                await asyncio.sleep(0.05 * attempt)

    async def handle(self, topic: str, value: bytes) -> None:
        if topic == CLIENTAPI_TYPING.name:
            await self.on_typing(edu_log_pb2.TypingUpdate.FromString(value))
        elif topic == CLIENTAPI_RECEIPT.name:
            await self.on_receipt(edu_log_pb2.ReceiptUpdate.FromString(value))
        elif topic == CLIENTAPI_PRESENCE.name:
            await self.on_presence(edu_log_pb2.PresenceUpdate.FromString(value))
        elif topic == CLIENTAPI_SEND_TO_DEVICE.name:
            await self.on_to_device(edu_log_pb2.ToDeviceMessage.FromString(value))
        else:
            logger.warning("skipping a record of unknown topic %r", topic)

    async def on_typing(self, msg: edu_log_pb2.TypingUpdate) -> None:
        position = self._typing.update(msg.room_id, msg.user_id, msg.typing, msg.sent_at_ms + msg.timeout_ms)
        if position is not None:
            await self.notify_typing(msg.room_id, position)

    async def notify_typing(self, room_id: str, position: int) -> None:
        async with self._db.read() as reader:
            members = await reader.local_members(room_id, self._server_name)
        self._notifier.on_new_data(position, members, "typing")

    async def on_receipt(self, msg: edu_log_pb2.ReceiptUpdate) -> None:
        if msg.receipt_type == FULLY_READ:
            return
        position = await self._db.write_receipt(msg.room_id, msg.receipt_type, msg.user_id, msg.thread_id,
                                                msg.event_id, msg.ts_ms)
        if position is None:
            return
        if msg.receipt_type == READ_PRIVATE:
            self._notifier.on_new_data(position, [msg.user_id], "receipt")
            return
        async with self._db.read() as reader:
            members = await reader.local_members(msg.room_id, self._server_name)
        self._notifier.on_new_data(position, members | {msg.user_id}, "receipt")

    async def on_presence(self, msg: edu_log_pb2.PresenceUpdate) -> None:
        written = await self._db.write_presence(
            msg.user_id, msg.presence, msg.status_msg or None,
            msg.last_active_ts_ms, keep_status=not msg.HasField("status_msg"))
        if written is None:
            return
        position, changed = written
        if changed:
            await self.notify_presence(msg.user_id, position)
        else:
            self._notifier.on_new_data(position, [], "presence")

    async def notify_presence(self, user_id: str, position: int) -> None:
        async with self._db.read() as reader:
            users = await reader.users_sharing_rooms(user_id)
        self._notifier.on_new_data(position, users, "presence")

    async def on_to_device(self, msg: edu_log_pb2.ToDeviceMessage) -> None:
        if not msg.target_user_id.endswith(":" + self._server_name):
            return  # a remote user's: the federation sender delivers it
        position = await self._db.write_to_device(
            user_id=msg.target_user_id, device_id=msg.target_device_id, message_id=msg.message_id,
            sender=msg.sender, event_type=msg.event_type, content_json=msg.content_json.decode("utf-8"))
        if position is not None:
            self._notifier.on_new_data(position, [msg.target_user_id], "to_device")
