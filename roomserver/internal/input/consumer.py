"""The ``roomserver.input`` consumer: rooms in parallel, one room strictly in
order, the input offset committed only after every record before it was
processed (and its output appended)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from common.log import Log, LogRecord, PositionLost
from common.topics import ROOMSERVER_INPUT

logger = logging.getLogger(__name__)

CONSUMER_GROUP = "roomserver"

RecordHandler = Callable[[LogRecord], Awaitable[None]]


async def consume_input(log: Log, handle: RecordHandler, ready: asyncio.Event,
                        group: str = CONSUMER_GROUP) -> None:
    """Runs until cancelled. ``handle`` must not raise for bad input; an
    exception that escapes it is logged and the record skipped, so one bad
    record never wedges a room."""
    consumer = await log.consumer(group, [ROOMSERVER_INPUT.name])
    try:
        ready.set()
        while True:
            try:
                records = await consumer.fetch(max_records=200, timeout=1.0)
            except PositionLost as e:
                logger.error("roomserver.input: %s; continuing from the earliest record", e)
                continue
            if not records:
                continue
            await _handle_batch(records, handle)
            positions: dict[tuple[str, int], int] = {}
            for record in records:
                key = (record.topic, record.partition)
                positions[key] = max(positions.get(key, 0), record.offset + 1)
            await consumer.commit(positions)
    finally:
        await consumer.close()


async def _handle_batch(records: Sequence[LogRecord], handle: RecordHandler) -> None:
    by_key: dict[bytes, list[LogRecord]] = {}
    for record in records:
        by_key.setdefault(record.key, []).append(record)

    async def run_key(key_records: list[LogRecord]) -> None:
        for record in key_records:
            try:
                await handle(record)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("roomserver.input record %s[%d]@%d failed; skipped",
                                  record.topic, record.partition, record.offset)

    async with asyncio.TaskGroup() as group:
        for key_records in by_key.values():
            group.create_task(run_key(key_records))
