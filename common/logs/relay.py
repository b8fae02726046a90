"""The log relay (protos/myelin/logs/v1/relay.proto): a process that appends
to a Kafka topic streams each acknowledged record to the processes that
consume it, whose consumers take it as if fetched.

Tansu, the broker the split deployment runs on here, holds every fetch for
its whole wait (see ``common/logs/kafka.py``), so each hop between processes
cost a fetch wait (the room server's output reaching the sync API: 3-7 ms of
a ~14 ms send-to-/sync). A relayed record is what the log holds at that
offset, handed over through ``KafkaLog.offer``: a member takes it only when
its own position reaches it, in order and once, and commits as usual, so
nothing about delivery or durability changes; a record it is not ready for
is left to the fetch. Losing the relay only brings back the fetch wait.
While relayed records keep a partition's consumer at the log's end, it does
not fetch that partition at all (``COVERED_CHECK_S`` in
``common/logs/kafka.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from myelin.logs.v1 import relay_pb2 as pb
from myelin.logs.v1 import relay_pb2_grpc as pb_grpc

from common.log import LogRecord
from common.logs.kafka import KafkaLog

logger = logging.getLogger(__name__)

# Records queued for one follower at most; a follower further behind is cut
# off (its records come by fetch) and follows again.
MAX_QUEUED = 10_000
FOLLOW_AGAIN_FIRST_DELAY = 0.1
FOLLOW_AGAIN_MAX_DELAY = 5.0


class LogRelayServicer(pb_grpc.LogRelayServicer):
    """Serves ``Follow`` for the records appended through ``log``."""

    def __init__(self, log: KafkaLog) -> None:
        self._log = log

    async def Follow(self, request: pb.FollowRequest,  # type: ignore[override]
                     context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[pb.RelayedRecord]:
        topics = frozenset(request.topics)
        queue: asyncio.Queue[LogRecord | None] = asyncio.Queue()

        def appended(record: LogRecord) -> None:
            if record.topic not in topics:
                return
            if queue.qsize() >= MAX_QUEUED:
                stop_listening()
                queue.put_nowait(None)
                return
            queue.put_nowait(record)

        stop_listening = self._log.listen_appends(appended)
        try:
            while True:
                record = await queue.get()
                if record is None:
                    logger.warning("a log relay follower fell %d records behind: cut off", MAX_QUEUED)
                    return
                yield pb.RelayedRecord(topic=record.topic, partition=record.partition, offset=record.offset,
                                       key=record.key, value=record.value)
        finally:
            stop_listening()


def add_log_relay(server: grpc.aio.Server, log: KafkaLog) -> None:
    """Serves the relay of ``log``'s appends on ``server`` (before it starts)."""
    pb_grpc.add_LogRelayServicer_to_server(LogRelayServicer(log), server)  # type: ignore[no-untyped-call]


async def follow_relay(log: KafkaLog, channel: grpc.aio.Channel, topics: Sequence[str]) -> None:
    """Hands the records another process relays for ``topics`` to ``log``'s
    members, following again whenever the stream ends, until cancelled."""
    stub: Any = pb_grpc.LogRelayStub(channel)  # type: ignore[no-untyped-call]
    delay = FOLLOW_AGAIN_FIRST_DELAY
    while True:
        call: Any = None
        try:
            call = stub.Follow(pb.FollowRequest(topics=list(topics)))
            async for relayed in call:
                log.offer(LogRecord(relayed.topic, relayed.partition, relayed.offset, relayed.key, relayed.value))
                delay = FOLLOW_AGAIN_FIRST_DELAY
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                logger.info("the process at the other end relays no log records: records come by fetch")
                return
            logger.debug("log relay stream broke: %s", e.code())
        except grpc.aio.UsageError:
            return  # the channel was closed
        finally:
            if call is not None:
                call.cancel()
            log.relay_stopped()
        await asyncio.sleep(delay)
        delay = min(delay * 2, FOLLOW_AGAIN_MAX_DELAY)
