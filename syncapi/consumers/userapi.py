"""Consumes ``userapi.account_data`` (``account_data_log.proto``) into the
sync API's read model and wakes the user whose account data changed; and
``userapi.device_list_update`` (``device_list_log.proto``): the user's
device-list position moves, and everyone sharing a room with them is woken
(``device_lists.changed`` in /sync).

Records are keyed by user ID, so one user's changes apply in order. Each
record carries the whole new content: a replayed record finds that content
stored already and changes nothing, so offsets are committed after handling
like the other consumers'.

When the log no longer holds this consumer's position (retention, a
restored backup), the changes in between are gone: the consumer then asks
the user API for the whole account data of every local user the read model
knows and stores what differs (``rebuild``), then follows the log again.
"""

from __future__ import annotations

import asyncio
import logging

from myelin.userapi.v1 import account_data_log_pb2, device_list_log_pb2
from myelin.userapi.v1 import userapi_pb2 as ua_pb

from common import errors
from common.consumer import KeyedConsumerRunner, run_consumer
from common.log import Log, LogRecord, PositionLost
from common.topics import USERAPI_ACCOUNT_DATA, USERAPI_DEVICE_LIST_UPDATE
from syncapi.internal.push import PushEvaluator
from syncapi.notifier import Notifier
from syncapi.storage.database import DERIVED_ACCOUNT_DATA, SyncDatabase
from userapi.api import AccountDataQueryAPI

logger = logging.getLogger(__name__)

CONSUMER_GROUP = "syncapi.userapi"
MAX_ATTEMPTS = 3
CONCURRENCY = 4
STOP_TIMEOUT = 10.0
STREAM = "account_data"
DEVICE_LIST_STREAM = "device_list"


class UserAPIConsumer:
    def __init__(self, database: SyncDatabase, notifier: Notifier, server_name: str,
                 userapi: AccountDataQueryAPI | None = None) -> None:
        self._db = database
        self._notifier = notifier
        self._server_name = server_name
        # Where lost changes are read back from (None: they stay lost).
        self._userapi = userapi
        # Told of each user whose push rules or ignored users changed, so
        # that it reads theirs again (and only theirs).
        self.push_evaluator: PushEvaluator | None = None

    async def run(self, log: Log, ready: asyncio.Event | None = None) -> None:
        """Follows the topic until cancelled; sets ``ready`` once consuming."""
        runner = KeyedConsumerRunner(log, CONSUMER_GROUP, [USERAPI_ACCOUNT_DATA.name, USERAPI_DEVICE_LIST_UPDATE.name],
                                     self.handle_record,
                                     on_position_lost=self._on_position_lost, concurrency=CONCURRENCY)
        await run_consumer(runner, ready, stop_timeout=STOP_TIMEOUT)

    async def _on_position_lost(self, lost: PositionLost) -> None:
        logger.warning("userapi.account_data position lost (%s): rebuilding from the user API", lost)
        await self.rebuild()

    async def rebuild(self) -> int:
        """Stores the user API's account data of every local user the read
        model knows, where it differs; answers how many pieces changed."""
        if self._userapi is None:
            logger.warning("no user API to rebuild account data from: changes in the gap stay missing")
            return 0
        async with self._db.read() as reader:
            users = await reader.known_local_users(self._server_name)
        changed = 0
        for user_id in users:
            try:
                answer = await self._userapi.query_account_data(
                    ua_pb.QueryAccountDataRequest(user_id=user_id, all_rooms=True))
            except errors.MatrixError as e:
                logger.warning("account data of %s not rebuilt: %s", user_id, e)
                continue
            for data in answer.account_data:
                position = await self._db.write_account_data(user_id, data.room_id, data.type,
                                                             data.content_json.decode("utf-8"))
                if position is not None:
                    changed += 1
                    self._stored(user_id, data.room_id, data.type)
                    self._notifier.on_new_data(position, [user_id], STREAM)
        return changed

    async def handle_record(self, record: LogRecord) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                if record.topic == USERAPI_DEVICE_LIST_UPDATE.name:
                    await self.handle_device_list(record.value)
                else:
                    await self.handle(record.value)
                return
            except Exception:
                if attempt == MAX_ATTEMPTS:
                    raise
                logger.warning("account data record %s/%d@%d failed, retrying", record.topic,
                               record.partition, record.offset, exc_info=True)
                await asyncio.sleep(0.05 * attempt)

    async def handle(self, value: bytes) -> None:
        change = account_data_log_pb2.AccountDataChange.FromString(value)
        if not change.user_id or not change.type:
            logger.warning("skipping an account data change without a user or a type")
            return
        position = await self._db.write_account_data(change.user_id, change.room_id, change.type,
                                                     change.content_json.decode("utf-8"))
        if position is not None:
            self._stored(change.user_id, change.room_id, change.type)
            self._notifier.on_new_data(position, [change.user_id], STREAM)

    def _stored(self, user_id: str, room_id: str, data_type: str) -> None:
        """A new content of the user's account data is stored (committed)."""
        if self.push_evaluator is not None and not room_id and data_type in DERIVED_ACCOUNT_DATA:
            self.push_evaluator.forget_user(user_id)

    async def handle_device_list(self, value: bytes) -> None:
        update = device_list_log_pb2.DeviceListUpdate.FromString(value)
        if not update.user_id:
            logger.warning("skipping a device list update without a user")
            return
        position = await self._db.write_device_list_change(update.user_id)
        async with self._db.read() as reader:
            users = await reader.users_sharing_rooms(update.user_id)
        self._notifier.on_new_data(position, users | {update.user_id}, DEVICE_LIST_STREAM)
