"""The input call: append events to ``roomserver.input`` and (when asked)
wait until the room server has processed them.

The consumer in this process reports each entry's outcome by request ID. A
room's input may be consumed by another instance of the room server (a split
deployment with several); the waiting caller then learns the outcome from the
database, which it polls while it waits.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from myelin.roomserver.v1 import input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as pb

from common import errors
from common.log import Log
from common.topics import ROOMSERVER_INPUT
from roomserver.internal.input.processor import (
    DUPLICATE,
    INVALID,
    InputProcessor,
    InvalidInput,
    duplicate_reason,
)
from roomserver.storage.database import EventRecord, RoomserverDatabase

logger = logging.getLogger(__name__)

# How often a waiting caller looks in the database for outcomes that another
# instance of the room server produced.
POLL_INTERVAL_SECONDS = 0.5

#: Events for one room go into entries of about this size at most: Kafka
#: refuses records over its message.max.bytes (1 MiB by default).
MAX_ENTRY_BYTES = 512 * 1024


@dataclass
class _Entry:
    """An entry being filled: the request indexes of its events and its size."""

    room_id: str
    entry: input_log_pb2.InputRoomEventsEntry
    indexes: list[int] = field(default_factory=list)
    size: int = 0


def outcome_of(record: EventRecord) -> pb.InputEventResult:
    if record.is_rejected:
        return pb.InputEventResult(event_id=record.event_id, outcome=pb.INPUT_OUTCOME_REJECTED,
                                   reason=record.rejection_reason or "")
    if record.is_soft_failed:
        return pb.InputEventResult(event_id=record.event_id, outcome=pb.INPUT_OUTCOME_SOFT_FAILED)
    return pb.InputEventResult(event_id=record.event_id, outcome=pb.INPUT_OUTCOME_ACCEPTED)


class Inputer:
    def __init__(self, db: RoomserverDatabase, log: Log, timeout_seconds: float) -> None:
        self._db = db
        self._log = log
        self._timeout = timeout_seconds
        self._waiters: dict[str, asyncio.Future[list[pb.InputEventResult]]] = {}

    def report(self, request_id: str, results: list[pb.InputEventResult]) -> None:
        """Called by the consumer once it processed the entry ``request_id``."""
        waiter = self._waiters.get(request_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(results)

    async def input_room_events(self, req: pb.InputRoomEventsRequest) -> pb.InputRoomEventsResponse:
        results: list[pb.InputEventResult | None] = [None] * len(req.events)
        parsed: list[tuple[int, str, str]] = []  # (index, event_id, room_id)
        for index, input_event in enumerate(req.events):
            try:
                event = InputProcessor.parse(input_event, remember=True)
                parsed.append((index, event.event_id, event.room_id))
            except InvalidInput as e:
                results[index] = pb.InputEventResult(event_id=input_event.event.event_id,
                                                     outcome=INVALID, reason=str(e))
        known: dict[str, EventRecord] = {}
        if not all(e.HasField("transaction_id") for e in req.events):
            # A client's send (it carries its transaction ID) is new: built a
            # moment ago, and a client's retry is answered by the client API
            # from its transaction IDs. The consumer answers DUPLICATE all the
            # same, so only others' input (federation) is worth a lookup here.
            async with self._db.reading() as txn:
                known = await self._db.event_records_by_id(txn, [event_id for _, event_id, _ in parsed])

        # One entry per room, split so that no log record gets too big;
        # a room's entries go to one partition, in order.
        entries: list[_Entry] = []
        filling: dict[str, _Entry] = {}
        for index, event_id, room_id in parsed:
            # Stored but never written to the output (a crash in between): the
            # consumer sends it when it sees the event again.
            # An outlier that now comes as part of the timeline is processed again.
            record = known.get(event_id)
            if record is not None and record.sent_to_output and not (
                    record.is_outlier and req.events[index].kind != input_log_pb2.INPUT_KIND_OUTLIER):
                results[index] = pb.InputEventResult(event_id=event_id, outcome=DUPLICATE,
                                                     reason=duplicate_reason(record))
                continue
            input_event = input_log_pb2.InputRoomEvent()
            input_event.CopyFrom(req.events[index])
            input_event.event.event_id = event_id
            size = input_event.ByteSize()
            current = filling.get(room_id)
            if current is None or (current.indexes and current.size + size > MAX_ENTRY_BYTES):
                current = filling[room_id] = _Entry(room_id, input_log_pb2.InputRoomEventsEntry(
                    request_id=uuid.uuid4().hex, room_id=room_id))
                entries.append(current)
            current.entry.events.append(input_event)
            current.indexes.append(index)
            current.size += size

        loop = asyncio.get_running_loop()
        waiters = {}
        if req.wait:
            for pending in entries:
                request_id = pending.entry.request_id
                waiters[request_id] = self._waiters[request_id] = loop.create_future()
        try:
            for pending in entries:
                await self._log.append(ROOMSERVER_INPUT.name, pending.room_id.encode(),
                                       pending.entry.SerializeToString())
            if req.wait:
                # Each entry gets the whole timeout: a big input (a federated
                # join's auth chain) is many entries processed one by one.
                for pending in entries:
                    async with asyncio.timeout(self._timeout):
                        outcomes = await self._wait(pending.entry, waiters[pending.entry.request_id])
                    for index, outcome in zip(pending.indexes, outcomes, strict=False):
                        results[index] = outcome
        except TimeoutError:
            raise errors.Unavailable("the room server did not process the events in time") from None
        finally:
            for request_id in waiters:
                self._waiters.pop(request_id, None)
        response = pb.InputRoomEventsResponse()
        event_ids = {index: event_id for index, event_id, _ in parsed}
        for index, result in enumerate(results):
            if result is None:
                # Not waited for: appended to the log, outcome unknown yet.
                result = pb.InputEventResult(event_id=event_ids[index], outcome=pb.INPUT_OUTCOME_UNSPECIFIED)
            response.results.append(result)
        return response

    async def _wait(self, entry: input_log_pb2.InputRoomEventsEntry,
                    waiter: asyncio.Future[list[pb.InputEventResult]]) -> list[pb.InputEventResult]:
        while True:
            # asyncio.wait leaves the waiter alone on a timeout, as a shielded
            # wait_for did, with fewer futures and callbacks per send.
            await asyncio.wait((waiter,), timeout=POLL_INTERVAL_SECONDS)
            if waiter.done():
                return waiter.result()
            found = await self._outcomes_from_database(entry)
            if found is not None:
                return found

    async def _outcomes_from_database(self, entry: input_log_pb2.InputRoomEventsEntry
                                      ) -> list[pb.InputEventResult] | None:
        event_ids = [e.event.event_id for e in entry.events]
        async with self._db.reading() as txn:
            records = await self._db.event_records_by_id(txn, event_ids)
            failures = {event_id: reason for _, event_id, reason in
                        await self._db.input_failures_for(txn, request_id=entry.request_id)}
        results = []
        for event_id in event_ids:
            if event_id in failures:
                results.append(pb.InputEventResult(event_id=event_id, outcome=INVALID, reason=failures[event_id]))
            elif event_id in records and (records[event_id].sent_to_output):
                results.append(outcome_of(records[event_id]))
            else:
                return None
        return results
