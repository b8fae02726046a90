"""The ``roomserver.input`` consumer: rooms in parallel, one room strictly in
order, the input offset committed only after a record was processed (and its
output appended), through ``common.consumer.KeyedConsumerRunner`` in batch
mode: the records a room has queued are processed together, in one database
transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from common.consumer import KeyedConsumerRunner
from common.log import Log, LogRecord, PositionLost
from common.topics import ROOMSERVER_INPUT

logger = logging.getLogger(__name__)

CONSUMER_GROUP = "roomserver"

# The most records of one room processed in one transaction.
MAX_BATCH = 64

# How long a stopping consumer waits for the records in hand.
STOP_TIMEOUT_SECONDS = 30.0

BatchHandler = Callable[[Sequence[LogRecord]], Awaitable[None]]
PoisonHandler = Callable[[LogRecord, Exception], Awaitable[None]]


async def consume_input(log: Log, handle: BatchHandler, on_poison: PoisonHandler, ready: asyncio.Event,
                        group: str = CONSUMER_GROUP, concurrency: int = 8) -> None:
    """Runs until cancelled. ``handle`` gets a room's queued records (in
    order). When it raises, the records are handed over again one at a time;
    an exception that escapes ``handle`` for a single record skips it (after
    ``on_poison``), so one bad record never wedges a room.
    ``concurrency`` rooms are processed at once: each holds a database
    transaction, so more than the database can run at once only queues
    them up (SQLite has one writer; PostgreSQL a bounded pool)."""

    async def position_lost(lost: PositionLost) -> None:
        # Input the log no longer holds cannot be recovered by the room
        # server; writers that waited for it timed out. Go on from what is there.
        logger.error("roomserver.input: %s; continuing from the earliest record", lost)

    runner = KeyedConsumerRunner(log, group, [ROOMSERVER_INPUT.name], batch_handler=handle,
                                 max_batch=MAX_BATCH, on_poison=on_poison,
                                 on_position_lost=position_lost, concurrency=concurrency)
    waiter = asyncio.ensure_future(runner.ready.wait())
    waiter.add_done_callback(lambda _: ready.set())
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # Stop cleanly: the record in hand finishes, what is done is committed.
        runner.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, STOP_TIMEOUT_SECONDS)
        raise
    finally:
        waiter.cancel()
