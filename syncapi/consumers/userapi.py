"""Consumes ``userapi.account_data`` (``account_data_log.proto``) into the
sync API's read model and wakes the user whose account data changed.

Records are keyed by user ID, so one user's changes apply in order. Each
record carries the whole new content: a replayed record finds that content
stored already and changes nothing, so offsets are committed after handling
like the other consumers'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from myelin.userapi.v1 import account_data_log_pb2

from common.consumer import KeyedConsumerRunner
from common.log import Log, LogRecord, PositionLost
from common.topics import USERAPI_ACCOUNT_DATA
from syncapi.notifier import Notifier
from syncapi.storage.database import SyncDatabase

logger = logging.getLogger(__name__)

CONSUMER_GROUP = "syncapi.userapi"
MAX_ATTEMPTS = 3
CONCURRENCY = 4
STOP_TIMEOUT = 10.0
STREAM = "account_data"


class UserAPIConsumer:
    def __init__(self, database: SyncDatabase, notifier: Notifier) -> None:
        self._db = database
        self._notifier = notifier

    async def run(self, log: Log, ready: asyncio.Event | None = None) -> None:
        """Follows the topic until cancelled; sets ``ready`` once consuming."""
        runner = KeyedConsumerRunner(log, CONSUMER_GROUP, [USERAPI_ACCOUNT_DATA.name], self.handle_record,
                                     on_position_lost=self._on_position_lost, concurrency=CONCURRENCY)
        running = asyncio.create_task(runner.run())
        waiting = asyncio.create_task(runner.ready.wait())
        try:
            await asyncio.wait([running, waiting], return_when=asyncio.FIRST_COMPLETED)
            if runner.ready.is_set() and ready is not None:
                ready.set()
            await asyncio.shield(running)
        except asyncio.CancelledError:
            runner.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running, STOP_TIMEOUT)
            raise
        finally:
            waiting.cancel()

    async def _on_position_lost(self, lost: PositionLost) -> None:
        # What retention dropped is missing here until the user changes that
        # account data again; the user API still holds all of it.
        logger.warning("userapi.account_data position lost (%s): going on from the oldest record kept", lost)

    async def handle_record(self, record: LogRecord) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
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
            self._notifier.on_new_data(position, [change.user_id], STREAM)
