"""The federation sender: follows ``roomserver.output`` and the EDU topics
and delivers what local users do to the other servers that should see it,
through a durable queue per destination (``queues.py``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.consumer import KeyedConsumerRunner, run_consumer
from common.log import Log, LogRecord, PositionLost
from common.storage import Database
from common.topics import ROOMSERVER_OUTPUT
from federationapi.sender.consumers.clientapi import EDU_TOPICS, EDUConsumer
from federationapi.sender.consumers.roomserver import RoomserverOutputConsumer
from federationapi.sender.queues import DestinationQueues, TransactionSender
from federationapi.sender.storage import SenderDatabase
from roomserver.api import FederationRoomserverAPI

logger = logging.getLogger(__name__)

ROOMS_GROUP = "federationapi.sender"
EDUS_GROUP = "federationapi.sender.edus"
# A record whose handling fails this many times (the database is down) is
# given up as poison: retried first, because a PDU skipped is a PDU lost.
MAX_ATTEMPTS = 8
CONCURRENCY = 16
# How long a record may wait in the log before the sender reads it. Nobody
# waits on the sender within a request, and a destination's transactions go
# out one at a time anyway, so tens of milliseconds cost nothing; on Kafka
# (Tansu) a short wait is a poll every few milliseconds in this process and
# the broker for as long as records flow (issue 6: ~0.5 ms of CPU per sent
# event in each, in a room without remote servers).
MAX_DELAY = 0.05
STOP_TIMEOUT = 10.0


async def _with_retries(handle: Callable[[LogRecord], Awaitable[None]], record: LogRecord) -> None:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            await handle(record)
            return
        except Exception:
            if attempt == MAX_ATTEMPTS:
                raise
            logger.warning("federation sender: record %s[%d]@%d failed, retrying", record.topic,
                           record.partition, record.offset, exc_info=True)
            await asyncio.sleep(min(0.05 * 2 ** attempt, 5.0))


class FederationSender:
    """``run()`` follows the logs until cancelled (``ready`` once consuming
    and once the destinations with queued entries have resumed);
    ``close()`` stops the destination workers."""

    def __init__(self, database: SenderDatabase, queues: DestinationQueues, log: Log,
                 roomserver: FederationRoomserverAPI, server_name: str) -> None:
        self.database = database
        self.queues = queues
        self.log = log
        self.ready = asyncio.Event()
        self.rooms = RoomserverOutputConsumer(database, queues, roomserver, server_name)
        self.edus = EDUConsumer(database, queues, server_name)

    def destination_is_up(self, server_name: str) -> None:
        """Called when ``server_name`` reached us (an authenticated inbound
        request): if it was being retried after failures, its queue goes out
        now instead of at the end of the backoff (catch-up as soon as a
        server is back, however long its backoff had grown)."""
        if self.queues.is_backing_off(server_name):
            self.queues.retry_now(server_name)

    def add_wake_on_inbound(self, blueprint: Blueprint) -> None:
        """Calls ``destination_is_up`` for the origin of every request the
        blueprint's X-Matrix check authenticated."""

        async def origin_is_up(request: Request, response: HTTPResponse) -> None:
            origin = getattr(request.ctx, "origin", None)
            if isinstance(origin, str):
                self.destination_is_up(origin)

        blueprint.middleware(origin_is_up, "response")

    async def run(self) -> None:
        rooms_ready = asyncio.Event()
        edus_ready = asyncio.Event()
        rooms = KeyedConsumerRunner(self.log, ROOMS_GROUP, [ROOMSERVER_OUTPUT.name], self._handle_output,
                                    on_position_lost=self._on_position_lost, concurrency=CONCURRENCY,
                                    max_delay=MAX_DELAY)
        edus = KeyedConsumerRunner(self.log, EDUS_GROUP, EDU_TOPICS, self._handle_edu,
                                   on_position_lost=self._on_position_lost, concurrency=CONCURRENCY,
                                   max_delay=MAX_DELAY)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(run_consumer(rooms, rooms_ready, stop_timeout=STOP_TIMEOUT))
            tasks.create_task(run_consumer(edus, edus_ready, stop_timeout=STOP_TIMEOUT))
            await self.queues.resume()
            await rooms_ready.wait()
            await edus_ready.wait()
            self.ready.set()

    async def _handle_output(self, record: LogRecord) -> None:
        await _with_retries(self.rooms.handle_record, record)

    async def _handle_edu(self, record: LogRecord) -> None:
        await _with_retries(self.edus.handle_record, record)

    async def _on_position_lost(self, lost: PositionLost) -> None:
        # Rooms notice the gap by their stream positions and re-read their
        # members; lost EDUs are gone.
        logger.warning("federation sender: %s; going on from the oldest record kept", lost)

    async def close(self) -> None:
        await self.queues.close()


def build_sender(db: Database, client: TransactionSender, log: Log, roomserver: FederationRoomserverAPI,
                 server_name: str, *, backoff_initial: float = 1.0, backoff_max: float = 3600.0) -> FederationSender:
    database = SenderDatabase(db, server_name)
    queues = DestinationQueues(database, client, server_name, backoff_initial=backoff_initial,
                               backoff_max=backoff_max)
    return FederationSender(database, queues, log, roomserver, server_name)
