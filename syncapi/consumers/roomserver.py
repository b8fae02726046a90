"""Consumes ``roomserver.output`` into the sync API's read model.

Entries are handled per room in order (the log is keyed by room ID), rooms in
parallel. Handling is idempotent by event ID, so entries the room server
re-sends after a crash, or that this consumer sees again after a restart
before its offset commit, change nothing. After each commit the notifier
wakes the users the entry concerns.

When an entry's ``last_sent_event_id`` is not the last entry this consumer
applied for the room, it has missed entries (retention, a restored backup):
it then rebuilds the room's current state from the room server's query
before applying the entry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from myelin.roomserver.v1 import events_pb2, output_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common.consumer import KeyedConsumerRunner, run_consumer
from common.log import Log, LogRecord, PositionLost
from common.lru_cache import LRUCache
from common.topics import ROOMSERVER_OUTPUT
from matrixlib.events import Event
from matrixlib.room_versions import get_room_version
from roomserver.api import SyncRoomserverAPI
from syncapi.internal.push import PushEvaluator, member_changes
from syncapi.notifier import Notifier
from syncapi.storage.database import Applied, MissedEntries, NewEvent, Reader, RoomEventWrite, SyncDatabase
from syncapi.storage.tables.notifications import StoredNotification

# Bound of the rooms whose local members are kept in memory (issue 6: a
# long-running server sees ever more rooms), in rooms and in members held.
# A forgotten room's members are read from the database again.
MAX_MEMBER_ROOMS = 10_000
MAX_MEMBERS_HELD = 200_000

logger = logging.getLogger(__name__)

CONSUMER_GROUP = "syncapi"
# Attempts at one entry before it is reported and skipped (a poison entry
# must not wedge its room).
MAX_ATTEMPTS = 3
# Rooms handled at once. Writes serialise on the stream position anyway; a
# few in parallel overlap their reads without taking every pooled connection
# from the /sync readers.
WRITE_CONCURRENCY = 8
# The most entries of one room written in one transaction.
MAX_BATCH = 64
# Seconds a stopping consumer waits for the entries in flight.
STOP_TIMEOUT = 10.0


def parse_event(event: events_pb2.Event) -> Event:
    return Event.from_json(event.pdu_json, get_room_version(event.room_version), event.event_id)


def _weigh_members(members: set[str]) -> int:
    return len(members) + 1


class RoomserverOutputConsumer:
    def __init__(self, database: SyncDatabase, roomserver: SyncRoomserverAPI, notifier: Notifier,
                 server_name: str) -> None:
        self._db = database
        self._roomserver = roomserver
        self._notifier = notifier
        self._server_name = server_name
        self._local_suffix = ":" + server_name
        # room ID -> its local joined and invited users (see _notify_room).
        self._local_members: LRUCache[str, set[str]] = LRUCache(
            MAX_MEMBER_ROOMS, max_weight=MAX_MEMBERS_HELD, weigh=_weigh_members)
        # Push rules for the live timeline events stored, evaluated in the
        # events' own transaction; the notifications go to ``on_notifications``
        # (delivery to pushers).
        self.push_evaluator: PushEvaluator | None = None
        self.on_notifications: Callable[[list[StoredNotification]], None] | None = None

    # -- the loop -------------------------------------------------------------------------

    async def run(self, log: Log, ready: asyncio.Event | None = None) -> None:
        """Follows the topic until cancelled (per room in order, rooms in parallel)."""
        runner = KeyedConsumerRunner(log, CONSUMER_GROUP, [ROOMSERVER_OUTPUT.name],
                                     batch_handler=self.handle_records, max_batch=MAX_BATCH,
                                     on_position_lost=self._on_position_lost,
                                     concurrency=WRITE_CONCURRENCY,
                                     # An entry's content is committed in the room server's
                                     # database (its outbox appends it again after a crash)
                                     # and writing it twice changes nothing: its handling
                                     # need not wait for the log's fsync.
                                     read_unsynced=True)
        await run_consumer(runner, ready, stop_timeout=STOP_TIMEOUT)

    async def _on_position_lost(self, lost: PositionLost) -> None:
        # The log no longer holds where this consumer was: it goes on from the
        # oldest entry kept, and each room's next entry shows the gap through
        # last_sent_event_id, which rebuilds that room's state.
        logger.warning("roomserver.output position lost (%s): rooms are rebuilt as entries arrive", lost)

    async def handle_records(self, records: Sequence[LogRecord]) -> None:
        """A room's queued entries, in order. Runs of timeline events that
        follow on from what this consumer applied last are written in one
        transaction; anything else (other kinds, a gap, a re-sent event)
        goes through ``handle_record`` one by one. When the batch fails the
        runner hands the records over again one at a time (a single one is
        retried a few times first, as ``handle_record`` does)."""
        # The records' key is their room: the waiting members may start on
        # their answers while the records are written (the members are those
        # known now; the wake-up below uses those after the records).
        members = self._local_members.get(records[0].key.decode(errors="replace")) if records else None
        if members:
            self._notifier.news_coming(members)
        if len(records) > 1:
            await self._handle_batch(records)
            return
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                await self._handle_batch(records)
                return
            except Exception:
                if attempt == MAX_ATTEMPTS:
                    raise
                logger.warning("output entry %s/%d@%d failed, retrying", records[0].topic,
                               records[0].partition, records[0].offset, exc_info=True)
                await asyncio.sleep(0.05 * attempt)

    async def _handle_batch(self, records: Sequence[LogRecord]) -> None:
        # The wake-ups wait for the whole batch: a redaction's event and the
        # entry that redacts its target come one after the other, and a
        # client woken by the first must not read the target unredacted.
        woken: list[Applied] = []
        run: list[output_log_pb2.NewRoomEvent] = []
        for record in records:
            output = output_log_pb2.OutputEvent.FromString(record.value)
            if output.WhichOneof("payload") == "new_room_event":
                run.append(output.new_room_event)
                continue
            await self._write_run(run, woken)
            run = []
            await self.handle(record.value)
        await self._write_run(run, woken)
        for applied in woken:
            await self._notify_room(applied)

    async def _write_run(self, run: Sequence[output_log_pb2.NewRoomEvent], woken: list[Applied]) -> None:
        """Writes the run; what it applied goes to ``woken`` for the wake-up."""
        if not run:
            return
        events = [parse_event(msg.event) for msg in run]
        room_id = events[0].room_id
        # Each entry must follow the one before it (the first: what was written last).
        chained = all(event.room_id == room_id and msg.last_sent_event_id in ("", before.event_id)
                      for msg, event, before in zip(run[1:], events[1:], events[:-1], strict=True))
        results: list[Applied | None] | None = None
        notifications: list[StoredNotification] = []
        if chained:
            writes = [RoomEventWrite(self._new_event(msg, event), adds_state_event_ids=list(msg.adds_state_event_ids),
                                     removes_state_event_ids=list(msg.removes_state_event_ids),
                                     adds_state_events=[parse_event(e) for e in msg.adds_state_events],
                                     room_stream_position=msg.room_stream_position)
                      for msg, event in zip(run, events, strict=True)]
            state_changed = any(event.state_key is not None or msg.adds_state_event_ids or msg.removes_state_event_ids
                                for msg, event in zip(run, events, strict=True))
            # Joins and leaves: the push inputs kept for the room are updated, not read again.
            members_only = member_changes(
                [(event, msg.adds_state_event_ids, msg.removes_state_event_ids)
                 for msg, event in zip(run, events, strict=True)]) if state_changed else None
            evaluator = self.push_evaluator

            async def push(reader: Reader, live: Sequence[tuple[Event, int]]) -> list[StoredNotification]:
                assert evaluator is not None
                return await evaluator.evaluate(reader, room_id, live, state_changed=state_changed,
                                                members_only=members_only if len(live) == len(run) else None)

            try:
                # The notifications are stored with the events, before the
                # wake-up: the /sync it answers has the counts.
                results, notifications = await self._db.write_room_events_with_push(
                    writes, local_server=self._server_name, follows=run[0].last_sent_event_id or None,
                    push=push if evaluator is not None else None)
            except MissedEntries:
                results = None
        if results is None:
            # Not a plain continuation (a gap to rebuild, a replay): one by one.
            for one in run:
                await self._apply(output_log_pb2.OutputEvent(new_room_event=one).SerializeToString())
            return
        if notifications and self.on_notifications is not None:
            self.on_notifications(notifications)
        woken.extend(applied for applied in results if applied is not None)

    async def _tell_room_events(self, room_id: str, stored: Sequence[tuple[Event, int]]) -> None:
        """Push rules for events written one by one (outside a batch)."""
        if not stored or self.push_evaluator is None:
            return
        try:
            notifications = await self.push_evaluator.on_room_events(room_id, stored)
        except Exception:
            # The events are committed: a retry would find them stored and
            # skip them, wake-ups included. Their users must still be woken.
            logger.exception("push rules failed for %d events of %s", len(stored), room_id)
            return
        if notifications and self.on_notifications is not None:
            self.on_notifications(notifications)

    async def _apply(self, value: bytes) -> None:
        """``handle`` with ``handle_record``'s retries, for one entry of a batch."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                await self.handle(value)
                return
            except Exception:
                if attempt == MAX_ATTEMPTS:
                    raise
                await asyncio.sleep(0.05 * attempt)

    @staticmethod
    def _new_event(msg: output_log_pb2.NewRoomEvent, event: Event) -> NewEvent:
        txn = msg.transaction_id if msg.HasField("transaction_id") else None
        return NewEvent(
            event=event, historical=msg.historical, history_visibility=msg.history_visibility,
            txn_user_id=txn.user_id if txn else None, txn_device_id=txn.device_id if txn else None,
            txn_id=txn.transaction_id if txn else None)

    async def handle_record(self, record: LogRecord) -> None:
        """One entry, retried a few times for passing failures (a busy
        database); then the runner reports it and goes on with the room."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                await self.handle(record.value)
                return
            except Exception:
                if attempt == MAX_ATTEMPTS:
                    raise
                logger.warning("output entry %s/%d@%d failed, retrying", record.topic,
                               record.partition, record.offset, exc_info=True)
                await asyncio.sleep(0.05 * attempt)

    # -- one entry ------------------------------------------------------------------------

    async def handle(self, value: bytes) -> None:
        output = output_log_pb2.OutputEvent.FromString(value)
        kind = output.WhichOneof("payload")
        applied: Applied | None
        if kind == "new_room_event":
            applied = await self._on_new_room_event(output.new_room_event)
        elif kind == "new_invite_event":
            applied = await self._on_new_invite(output.new_invite_event)
        elif kind == "retire_invite_event":
            msg = output.retire_invite_event
            applied = await self._db.retire_invite(msg.event_id, msg.room_id, msg.target_user_id,
                                                   msg.membership, msg.retired_by_event_id)
        elif kind == "redacted_event":
            msg_r = output.redacted_event
            await self._db.redact_event(msg_r.redacted_event_id, msg_r.redaction_event_id,
                                        parse_event(msg_r.redacted_event))
            # Clients learn of it from the redaction event itself, already delivered.
            applied = None
        else:
            logger.warning("skipping output entry of unknown kind %r", kind)
            return
        if applied is not None:
            if kind == "new_room_event":
                await self._notify_room(applied)
            else:
                self._notifier.on_new_data(applied.position, applied.user_ids)

    async def _notify_room(self, applied: Applied) -> None:
        """Wakes the room's local joined and invited users and anyone whose
        membership changed. The local members of each room are kept in memory
        (loaded once, then updated from the changes each entry reports), so a
        wake-up costs O(affected users), not a read of a large room's members."""
        members = self._local_members.get(applied.room_id)
        if members is None or applied.rebuilt:
            async with self._db.read() as reader:
                members = await reader.local_members(applied.room_id, self._server_name)
            self._local_members.put(applied.room_id, members)
        elif applied.memberships:
            for user_id, membership in applied.memberships.items():
                if not user_id.endswith(self._local_suffix):
                    continue
                if membership in ("join", "invite"):
                    members.add(user_id)
                else:
                    members.discard(user_id)
            self._local_members.put(applied.room_id, members)  # weighed again
        self._notifier.on_new_data(applied.position, members | applied.user_ids)

    async def _on_new_room_event(self, msg: output_log_pb2.NewRoomEvent) -> Applied | None:
        event = parse_event(msg.event)
        if await self._db.is_known_event(event.event_id, in_timeline=True):
            return None
        room_id = event.room_id
        last_seen = await self._db.last_event_id(room_id)
        if msg.last_sent_event_id and last_seen != msg.last_sent_event_id:
            logger.warning("missed output entries for %s (have %s, expected %s): rebuilding its state",
                           room_id, last_seen, msg.last_sent_event_id)
            rebuilt = await self._rebuild_room(room_id)
            if rebuilt is not None:
                await self._notify_room(rebuilt)
        txn = msg.transaction_id if msg.HasField("transaction_id") else None
        new = NewEvent(
            event=event, historical=msg.historical, history_visibility=msg.history_visibility,
            txn_user_id=txn.user_id if txn else None, txn_device_id=txn.device_id if txn else None,
            txn_id=txn.transaction_id if txn else None)
        applied = await self._db.write_room_event(
            new, adds_state_event_ids=list(msg.adds_state_event_ids),
            removes_state_event_ids=list(msg.removes_state_event_ids),
            adds_state_events=[parse_event(e) for e in msg.adds_state_events],
            room_stream_position=msg.room_stream_position, local_server=self._server_name)
        if applied is not None and not msg.historical:
            await self._tell_room_events(room_id, [(event, applied.position)])
        return applied

    async def _rebuild_room(self, room_id: str) -> Applied | None:
        response = await self._roomserver.query_latest_events_and_state(
            rs_pb.QueryLatestEventsAndStateRequest(room_id=room_id))
        if not response.room_exists:
            return None
        if self.push_evaluator is not None:
            self.push_evaluator.forget_room(room_id)
        return await self._db.rebuild_room_state(room_id, [parse_event(e) for e in response.state_events])

    async def _on_new_invite(self, msg: output_log_pb2.NewInviteEvent) -> Applied | None:
        event = parse_event(msg.event)
        stripped: list[dict[str, Any]] = []
        for raw in msg.invite_room_state_json:
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            if isinstance(value, dict):
                stripped.append(value)
        target = msg.target_user_id or event.state_key or ""
        if not target.endswith(":" + self._server_name):
            return None  # only local users sync here
        return await self._db.write_invite(event, target, stripped)
