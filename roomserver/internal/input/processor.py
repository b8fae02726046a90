"""Processing one ``roomserver.input`` entry: authorise, store, compute
state, and write what readers need to ``roomserver.output``.

An entry's events are handled in one database transaction, each in a
savepoint. The output-log entries they cause are written into the outbox in
that same transaction and appended to the log after the commit, then deleted from the outbox and the
event marked ``sent_to_output``. A crash between the commit and the append
leaves them in the outbox: they are sent when the consumer starts again (or
when the same event is input again), so nothing committed is lost and an
event is written at most once per unsent entry. Readers dedupe by event ID.

Outcomes (spec: server-server API "Checks performed on receipt of a PDU"):

* INVALID: the entry cannot be processed at all (malformed, unknown room
  version, unknown room, unknown prev/auth events). Nothing is stored; the
  reason goes to ``roomserver_input_failures``.
* REJECTED: fails the auth rules against its auth events or the state
  before it. Stored as rejected; the state after it is the state before it.
* SOFT_FAILED: passes against the state before it but not against the
  current state. Stored, never a forward extremity, not sent to readers.
* ACCEPTED, or DUPLICATE when the event ID is already stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from myelin.roomserver.v1 import events_pb2, input_log_pb2, output_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as pb
from sqlalchemy.exc import DBAPIError

from common.built_events import take_built
from common.log import Log
from matrixlib.auth_rules import (
    AuthError,
    auth_state_from_auth_events,
    check_auth_events_list,
    check_auth_rules,
)
from matrixlib.canonical_json import encode_canonical_json
from matrixlib.events import (
    CANONICAL_ALIAS,
    CREATE,
    ENCRYPTION,
    HISTORY_VISIBILITY,
    JOIN_RULES,
    MEMBER,
    NAME,
    TOPIC,
    Event,
    EventFormatError,
)
from matrixlib.power_levels import PowerLevels
from matrixlib.room_versions import RoomVersion, UnknownRoomVersionError, get_room_version
from roomserver.internal.convert import (
    event_to_proto,
    history_visibility_of,
    is_history_visibility,
    more_permissive,
    stripped_state,
)
from roomserver.internal.state import StateComputer
from roomserver.producers import OutputProducer
from roomserver.storage.database import (
    EventRecord,
    MembershipRow,
    NewOutlier,
    RoomRecord,
    RoomserverDatabase,
    StateMap,
    TransactionKey,
    Txn,
)

logger = logging.getLogger(__name__)

ACCEPTED = pb.INPUT_OUTCOME_ACCEPTED
REJECTED = pb.INPUT_OUTCOME_REJECTED
SOFT_FAILED = pb.INPUT_OUTCOME_SOFT_FAILED
DUPLICATE = pb.INPUT_OUTCOME_DUPLICATE
INVALID = pb.INPUT_OUTCOME_INVALID

NEW = input_log_pb2.INPUT_KIND_NEW
OUTLIER = input_log_pb2.INPUT_KIND_OUTLIER
OLD = input_log_pb2.INPUT_KIND_OLD

AVATAR = "m.room.avatar"

#: How long a client's transaction ID keeps answering its event: clients
#: retry within seconds or minutes. Older ones are deleted about hourly,
#: when output was sent.
TRANSACTION_TTL_MS = 24 * 60 * 60 * 1000
FORGET_TRANSACTIONS_EVERY_SECONDS = 3600.0

#: Entries of at least this many outliers are stored in bulk.
OUTLIER_BATCH_MIN = 8

#: Appended output is forgotten (its outbox rows deleted, its events marked
#: sent) by a transaction of its own about this long after, all that was
#: appended meanwhile together; by an input transaction only when this much
#: waits (two statements fewer for every other batch).
FORGET_SENT_DELAY_SECONDS = 1.0
FORGET_WITH_INPUT_AT = 256

#: How often one event is tried when the database fails.
DATABASE_ATTEMPTS = 3

#: The most event JSON a NewRoomEvent carries in ``adds_state_events``; over
#: it, the events are left out (their IDs are always there).
MAX_ADDED_STATE_BYTES = 256 * 1024
#: The same for an event input with the state before it (a join over
#: federation): readers have never seen that state, and the sync API serves
#: the room from what the output carries, so it goes whole up to well
#: within a log record's limit (16 MiB on Kafka).
MAX_GIVEN_STATE_BYTES = 8 * 1024 * 1024
# The state an invited user is shown (client-server API "Stripped state";
# the create event is required since v1.16).
_INVITE_STATE_TYPES = (CREATE, JOIN_RULES, NAME, AVATAR, TOPIC, CANONICAL_ALIAS, ENCRYPTION)


#: How many events the input call parsed stay for the consumer (see ``parse``).
PARSED_LATELY_SIZE = 256
#: (room version, JSON) -> the event parsed from them, with its ID computed.
_parsed_lately: OrderedDict[tuple[str, bytes], Event] = OrderedDict()


def duplicate_reason(record: EventRecord) -> str:
    """What happened to an event the first time, for a DUPLICATE answer."""
    if record.is_rejected:
        return f"already processed: rejected: {record.rejection_reason or ''}"
    if record.is_soft_failed:
        return "already processed: soft-failed"
    return ""


def transaction_key(room_id: str, input_event: input_log_pb2.InputRoomEvent) -> TransactionKey | None:
    """The local client's transaction a NEW event was sent in, if any: the
    room keeps one accepted event per transaction."""
    if (input_event.kind or NEW) != NEW or not input_event.HasField("transaction_id"):
        return None
    txn = input_event.transaction_id
    if not txn.transaction_id:
        return None
    return (room_id, txn.user_id, txn.device_id, txn.scope, txn.transaction_id)


def _referenced_event_ids(inputs: Sequence[input_log_pb2.InputRoomEvent]) -> set[str]:
    """The auth and prev events the inputs name, read from their JSON without
    parsing them as events (that comes later, once each): what the batch's
    checks will look up, so it can be read in one statement. Malformed
    input names nothing here and fails later."""
    found: set[str] = set()
    for input_event in inputs:
        parsed = _parsed_lately.get((input_event.event.room_version, input_event.event.pdu_json))
        if parsed is not None:
            # Parsed by this process's input call already.
            found.update(parsed.auth_event_ids)
            found.update(parsed.prev_event_ids)
            continue
        try:
            pdu = orjson.loads(input_event.event.pdu_json)
        except (ValueError, RecursionError):
            continue
        if not isinstance(pdu, dict):
            continue
        for key in ("auth_events", "prev_events"):
            refs = pdu.get(key)
            if not isinstance(refs, list):
                continue
            for ref in refs:
                # Room versions 1 and 2 name events as [event_id, hashes].
                event_id = ref[0] if isinstance(ref, list) and ref else ref
                if isinstance(event_id, str):
                    found.add(event_id)
    return found


class _Declined(Exception):
    """The bulk path leaves the entry to the one-by-one path."""


class _NeedsIsolation(Exception):
    """An event failed in a batch run without savepoints: run it again with them."""


class InvalidInput(Exception):
    """The event cannot be processed at all; nothing is stored."""


@dataclass
class _Unsent:
    """Output of one event, committed to the outbox and not yet appended.
    ``payloads`` is None when they must be read back from the outbox (an
    event stored before a crash)."""

    event_nid: int
    room_id: str
    payloads: list[bytes] | None


@dataclass
class _Checked:
    """What the checks decided about one event before it is stored."""

    rejected_reason: str | None = None
    soft_failed: bool = False
    state_before: StateMap | None = None
    state_before_nid: int | None = None
    prev_records: list[EventRecord] = field(default_factory=list)
    auth_nids: list[int] = field(default_factory=list)


class InputProcessor:
    def __init__(self, db: RoomserverDatabase, log: Log, server_name: str) -> None:
        self._db = db
        self._server_name = server_name
        self._producer = OutputProducer(log)
        self._state = StateComputer(db)
        # Events whose output is appended and whose outbox rows are not yet
        # deleted (see ``_send``).
        self._sent_unmarked: set[int] = set()
        self._forget_task: asyncio.Task[None] | None = None
        self._transactions_forgotten_at = float("-inf")

    # -- entries ---------------------------------------------------------------

    async def process_record(self, value: bytes) -> tuple[str, list[pb.InputEventResult]]:
        """Processes one raw log record; answers (request_id, results). A
        record that is not an entry is recorded as a failure and skipped."""
        return (await self.process_records([value]))[0]

    async def process_records(self, values: Sequence[bytes]) -> list[tuple[str, list[pb.InputEventResult]]]:
        """Processes raw log records of one room, in order, in ONE database
        transaction (each event checked against the state the events before
        it left), then appends their output; answers (request_id, results)
        per record. A record that is not an entry is recorded as a failure
        and skipped.

        The events run without savepoints first (two statements less each):
        when one of them fails, that transaction is rolled back and the
        records run again with each event in a savepoint, so a failed event
        leaves no trace but its failure record."""
        try:
            return await self._process_records(values, isolate=False)
        except _NeedsIsolation as e:
            logger.info("an event of a batch failed (%s); processing the batch again event by event",
                        e.__cause__)
            return await self._process_records(values, isolate=True)
        except DBAPIError as e:
            # On PostgreSQL the batch's new events are written at the end
            # (see RoomserverDatabase): a row refused there (an event another
            # instance stored meanwhile) fails the commit, not the event.
            logger.info("a batch's writes failed (%s); processing the batch again event by event", e)
            return await self._process_records(values, isolate=True)

    async def _process_records(self, values: Sequence[bytes], *, isolate: bool
                               ) -> list[tuple[str, list[pb.InputEventResult]]]:
        answers: list[tuple[str, list[pb.InputEventResult]]] = []
        to_send: list[_Unsent] = []
        entries: list[input_log_pb2.InputRoomEventsEntry | str] = []
        for value in values:
            entry = input_log_pb2.InputRoomEventsEntry()
            try:
                entry.ParseFromString(value)
                entries.append(entry)
            except DecodeError as e:
                entries.append(f"not an InputRoomEventsEntry: {e}")
        async with self._db.transaction() as txn:
            forgotten = await self._forget_sent(txn) if len(self._sent_unmarked) >= FORGET_WITH_INPUT_AT \
                else set()
            inputs = [e for entry in entries if not isinstance(entry, str) for e in entry.events]
            transaction_keys = {key for entry in entries if not isinstance(entry, str) for e in entry.events
                                if (key := transaction_key(entry.room_id, e)) is not None}
            await self._db.prefetch(txn, [e.event.event_id for e in inputs if e.event.event_id],
                                    _referenced_event_ids(inputs) | self._extremity_ids(entries),
                                    {entry.room_id for entry in entries if not isinstance(entry, str)},
                                    transaction_keys)
            for value, parsed in zip(values, entries, strict=True):
                if isinstance(parsed, str):
                    logger.warning("input record skipped: %s", parsed)
                    await self._db.record_input_failure(txn, request_id="", room_id="", event_id="",
                                                        reason=parsed, payload=value)
                    answers.append(("", []))
                    continue
                answers.append((parsed.request_id, await self._process_entry_in(txn, parsed, to_send, isolate)))
        self._sent_unmarked.difference_update(forgotten)
        if to_send:
            await self._send(to_send)
        return answers

    def _extremity_ids(self, entries: Sequence[input_log_pb2.InputRoomEventsEntry | str]) -> set[str]:
        """The IDs of the forward extremities of the entries' rooms, as far
        as they are in memory: an event that forks the room (built on an
        older extremity, as concurrent sends are) leaves them extremities,
        and their rows are then wanted; read with the batch's others."""
        found: set[str] = set()
        for room_id in {entry.room_id for entry in entries if not isinstance(entry, str)}:
            room = self._db.cached_room(room_id)
            for nid in room.forward_extremities if room is not None else ():
                head = self._db.cached_event_head(nid)
                if head is not None:
                    found.add(head[0])
        return found

    async def process_entry(self, entry: input_log_pb2.InputRoomEventsEntry) -> list[pb.InputEventResult]:
        """Processes an entry's events in one transaction, each in a savepoint
        (a failed event leaves no trace but its failure record), then appends
        their output."""
        return (await self.process_records([entry.SerializeToString()]))[0][1]

    async def _process_entry_in(self, txn: Txn, entry: input_log_pb2.InputRoomEventsEntry,
                                to_send: list[_Unsent], isolate: bool) -> list[pb.InputEventResult]:
        results: list[pb.InputEventResult] = []
        batch = await self._try_outlier_batch(txn, entry)
        if batch is not None:
            for input_event, (result, reason) in zip(entry.events, batch, strict=True):
                if reason:
                    await self._db.record_input_failure(
                        txn, request_id=entry.request_id, room_id=entry.room_id,
                        event_id=input_event.event.event_id, reason=reason,
                        payload=input_event.SerializeToString())
                results.append(result)
            return results
        for input_event in entry.events:
            event_id = input_event.event.event_id
            reason = ""
            try:
                result, unsent = await self._process_with_retries(txn, entry.room_id, input_event, isolate)
                if unsent is not None:
                    to_send.append(unsent)
            except _NeedsIsolation:
                raise
            except InvalidInput as e:
                reason = str(e)
            except Exception as e:
                # A bug, or a database failure: record it and go on, so
                # the room is not wedged.
                logger.exception("processing %s in %s failed", event_id, entry.room_id)
                reason = f"processing failed: {type(e).__name__}: {e}"
            if reason:
                logger.warning("input for room %r event %r skipped: %s", entry.room_id, event_id, reason)
                await self._db.record_input_failure(
                    txn, request_id=entry.request_id, room_id=entry.room_id, event_id=event_id,
                    reason=reason, payload=input_event.SerializeToString())
                result = pb.InputEventResult(event_id=event_id, outcome=INVALID, reason=reason)
            results.append(result)
        return results

    async def _try_outlier_batch(self, txn: Txn, entry: input_log_pb2.InputRoomEventsEntry
                                 ) -> list[tuple[pb.InputEventResult, str]] | None:
        """Many outliers (a federated join's auth chain and state) stored with
        a handful of statements instead of ten each. Answers per event its
        result and, for an INVALID one, the reason; None when the entry is
        not such a batch, or the batch path declines or fails (the caller
        then processes the events one by one)."""
        if len(entry.events) < OUTLIER_BATCH_MIN or any(e.kind != OUTLIER for e in entry.events):
            return None
        try:
            async with txn.savepoint():
                answers = await self._store_outlier_batch(txn, entry)
                if answers is None:
                    raise _Declined  # undo what it did (it may have created the room)
                return answers
        except _Declined:
            return None
        except Exception:
            logger.exception("storing %d outliers of %s at once failed; one by one instead",
                             len(entry.events), entry.room_id)
            return None

    async def _store_outlier_batch(self, txn: Txn, entry: input_log_pb2.InputRoomEventsEntry
                                   ) -> list[tuple[pb.InputEventResult, str]] | None:
        parsed: list[Event | str] = []
        for input_event in entry.events:
            try:
                event = self.parse(input_event)
                if event.room_id != entry.room_id:
                    raise InvalidInput(f"event {event.event_id} is in room {event.room_id}, not {entry.room_id}")
                parsed.append(event)
            except InvalidInput as e:
                parsed.append(str(e))
        batch = [e for e in parsed if isinstance(e, Event)]
        room = await self._db.room_by_id(txn, entry.room_id)
        creates = [e for e in batch if e.type == CREATE and e.state_key == ""]
        if room is None:
            if not creates:
                return None
            room = await self._room_for(txn, creates[0])
        if any(e.room_version.identifier != room.room_version for e in batch):
            return None
        known = await self._db.event_records_by_id(
            txn, {i for e in batch for i in (e.event_id, *e.auth_event_ids)})
        if any(not known[e.event_id].sent_to_output for e in batch if e.event_id in known):
            return None
        if any(self._is_invite_from_elsewhere(e) for e in batch if e.event_id not in known):
            # Invites of our users to rooms we are not in have their own path.
            return None
        create_event = await self._create_event(txn, room)
        if create_event is None and creates:
            create_event = creates[0]

        # Auth events first (Kahn's algorithm over the batch's auth edges).
        new = {e.event_id: e for e in batch if e.event_id not in known}
        reasons: dict[str, str] = {}
        waiting_on: dict[str, set[str]] = {}
        dependents: dict[str, list[str]] = {}
        for event_id, event in new.items():
            unknown = [a for a in event.auth_event_ids if a not in known and a not in new]
            if unknown:
                reasons[event_id] = f"unknown auth events: {', '.join(unknown)}"
                continue
            waiting_on[event_id] = {a for a in event.auth_event_ids if a in new}
            for a in waiting_on[event_id]:
                dependents.setdefault(a, []).append(event_id)
        ready = sorted((i for i, deps in waiting_on.items() if not deps), key=lambda i: new[i].depth)
        loaded = await self._db.events_by_nid(txn, {r.event_nid for r in known.values()})
        by_id: dict[str, Event] = {e.event_id: e for e in loaded.values()}
        rejected = {i for i, r in known.items() if r.is_rejected}
        order: list[Event] = []
        rejections: dict[str, str] = {}
        while ready:
            event_id = ready.pop()
            event = new[event_id]
            auth = [by_id[a] if a in by_id else new[a] for a in dict.fromkeys(event.auth_event_ids)]
            if any(a in reasons for a in event.auth_event_ids):
                reasons[event_id] = "an auth event could not be processed"
            else:
                try:
                    check_auth_events_list(event, auth, rejected_event_ids=rejected)
                    check_auth_rules(event, auth_state_from_auth_events(
                        auth, create_event if event.room_version.hydra else None))
                except AuthError as e:
                    rejections[event_id] = f"not allowed by its auth events: {e}"
                    rejected.add(event_id)
                order.append(event)
                by_id[event_id] = event
            for dependent in dependents.get(event_id, []):
                waiting_on[dependent].discard(event_id)
                if not waiting_on[dependent]:
                    ready.append(dependent)
        for event_id in new:
            if event_id not in by_id and event_id not in reasons:
                reasons[event_id] = "its auth events form a cycle"

        type_nids = await self._db.type_nids(txn, {e.type for e in order}, create=True)
        state_key_nids = await self._db.state_key_nids(
            txn, {e.state_key for e in order if e.state_key is not None}, create=True)
        create_id = create_event.event_id if create_event is not None else None
        outliers = [NewOutlier(
            event=e, type_nid=type_nids[e.type],
            state_key_nid=state_key_nids[e.state_key] if e.state_key is not None else None,
            auth_event_ids=[*e.auth_event_ids, *([create_id] if e.room_version.hydra and create_id
                                                 and e.event_id != create_id else [])],
            rejection_reason=rejections.get(e.event_id)) for e in order]
        nids = await self._db.insert_outliers(txn, room.room_nid, outliers,
                                              {i: r.event_nid for i, r in known.items()})
        for create in creates:
            if create.event_id in nids and create.event_id not in rejections and room.create_event_nid is None:
                await self._db.update_room(txn, room.room_nid, create_event_nid=nids[create.event_id])

        answers: list[tuple[pb.InputEventResult, str]] = []
        for input_event, item in zip(entry.events, parsed, strict=True):
            if isinstance(item, str):
                answers.append((pb.InputEventResult(event_id=input_event.event.event_id, outcome=INVALID,
                                                    reason=item), item))
            elif item.event_id in known:
                answers.append((pb.InputEventResult(event_id=item.event_id, outcome=DUPLICATE,
                                                    reason=duplicate_reason(known[item.event_id])), ""))
            elif item.event_id in reasons:
                answers.append((pb.InputEventResult(event_id=item.event_id, outcome=INVALID,
                                                    reason=reasons[item.event_id]), reasons[item.event_id]))
            elif item.event_id in rejections:
                answers.append((pb.InputEventResult(event_id=item.event_id, outcome=REJECTED,
                                                    reason=rejections[item.event_id]), ""))
            else:
                answers.append((pb.InputEventResult(event_id=item.event_id, outcome=ACCEPTED), ""))
        return answers

    async def _process_with_retries(self, txn: Txn, room_id: str, input_event: input_log_pb2.InputRoomEvent,
                                    isolate: bool = True) -> tuple[pb.InputEventResult, _Unsent | None]:
        """One event in a savepoint, retried when the database failed (a
        PostgreSQL deadlock between rooms interning the same new names, a
        busy SQLite), so a passing failure does not make it INVALID. Without
        ``isolate``, no savepoint: any failure raises ``_NeedsIsolation``."""
        if not isolate:
            try:
                return await self._process_event(txn, room_id, input_event)
            except Exception as e:
                raise _NeedsIsolation from e
        for attempt in range(1, DATABASE_ATTEMPTS + 1):
            try:
                async with txn.savepoint():
                    return await self._process_event(txn, room_id, input_event)
            except DBAPIError:
                if attempt == DATABASE_ATTEMPTS:
                    raise
                logger.warning("database error processing %s (attempt %d); retrying",
                               input_event.event.event_id, attempt, exc_info=True)
                await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def describe_record(value: bytes) -> tuple[str, str, list[str]]:
        """(request_id, room_id, event IDs) of a raw record, as far as it parses."""
        entry = input_log_pb2.InputRoomEventsEntry()
        try:
            entry.ParseFromString(value)
        except DecodeError:
            return "", "", []
        return entry.request_id, entry.room_id, [e.event.event_id for e in entry.events]

    async def record_failure(self, request_id: str, room_id: str, event_id: str, reason: str,
                             payload: bytes | None) -> None:
        await self._record_failure(request_id, room_id, event_id, reason, payload)

    async def _record_failure(self, request_id: str, room_id: str, event_id: str, reason: str,
                              payload: bytes | None) -> None:
        logger.warning("input for room %r event %r skipped: %s", room_id, event_id, reason)
        async with self._db.transaction() as txn:
            await self._db.record_input_failure(txn, request_id=request_id, room_id=room_id,
                                                event_id=event_id, reason=reason, payload=payload)

    # -- one event ---------------------------------------------------------------

    @staticmethod
    def parse(input_event: input_log_pb2.InputRoomEvent, *, remember: bool = False) -> Event:
        """The event of an input, parsed with the version it names. Raises
        InvalidInput. The input call parses each event (``remember``) before
        the consumer of this process does: the consumer then takes the event
        parsed from the very same bytes instead of parsing them again."""
        key = (input_event.event.room_version, input_event.event.pdu_json)
        event = _parsed_lately.pop(key, None)
        if event is None:
            event = InputProcessor._parse(input_event)
            if remember:
                _parsed_lately[key] = event
                while len(_parsed_lately) > PARSED_LATELY_SIZE:
                    _parsed_lately.popitem(last=False)
        event_id = event.event_id
        if input_event.event.event_id and input_event.event.event_id != event_id:
            raise InvalidInput(f"event ID {input_event.event.event_id} does not match the event ({event_id})")
        return event

    @staticmethod
    def _parse(input_event: input_log_pb2.InputRoomEvent) -> Event:
        try:
            room_version = get_room_version(input_event.event.room_version)
        except UnknownRoomVersionError as e:
            raise InvalidInput(str(e)) from None
        try:
            # An event this process built from these very bytes (a local send):
            # the same event, already hashed, not parsed again.
            event = take_built(room_version.identifier, input_event.event.pdu_json) or Event.from_json(
                input_event.event.pdu_json, room_version)
            _ = event.event_id
            _ = event.room_id
        except (EventFormatError, ValueError, KeyError, TypeError) as e:
            raise InvalidInput(f"malformed event: {e}") from None
        return event

    async def _process_event(self, txn: Txn, room_id: str, input_event: input_log_pb2.InputRoomEvent
                             ) -> tuple[pb.InputEventResult, _Unsent | None]:
        """The event's outcome, and its output still to send."""
        event = self.parse(input_event)
        if event.room_id != room_id:
            raise InvalidInput(f"event {event.event_id} is in room {event.room_id}, not {room_id}")
        kind = input_event.kind or NEW
        # One query for the event itself, its auth events and its prev events.
        known = await self._db.event_records_by_id(
            txn, {event.event_id, *event.auth_event_ids, *event.prev_event_ids})
        existing = known.get(event.event_id)
        if existing is not None and not (existing.is_outlier and kind != OUTLIER):
            result = pb.InputEventResult(event_id=event.event_id, outcome=DUPLICATE,
                                         reason=duplicate_reason(existing))
            return result, (None if existing.sent_to_output else _Unsent(existing.event_nid, room_id, None))
        key = transaction_key(room_id, input_event)
        if key is not None:
            earlier = await self._db.transaction_event(txn, key)
            if earlier is not None:
                # A retransmission (a client's retry, the same request twice
                # at once): the transaction's first accepted event stands.
                return pb.InputEventResult(event_id=event.event_id, outcome=DUPLICATE,
                                           reason=f"transaction {key[4]!r} already sent {earlier}",
                                           transaction_event_id=earlier), None
            result, unsent = await self._store_new(txn, event, input_event, kind, existing, known)
            if result.outcome == ACCEPTED:
                self._db.record_transaction(txn, key, event.event_id)
            return result, unsent
        if existing is None and kind == OUTLIER and self._is_invite_from_elsewhere(event):
            room = await self._db.room_by_id(txn, event.room_id)
            if room is None or room.state_snapshot_nid is None or any(
                    a not in known for a in event.auth_event_ids) or not await self._has_local_member(txn, room):
                return await self._store_remote_invite(txn, event, room, known)
        if existing is None and kind == OUTLIER and self._is_own_membership_elsewhere(event):
            room = await self._db.room_by_id(txn, event.room_id)
            if room is None or room.state_snapshot_nid is None or not await self._has_local_member(txn, room):
                return await self._store_membership_elsewhere(txn, event, room, known)
        # New, or an outlier that now arrives as part of the timeline (e.g.
        # an auth event, later backfilled): it gets its state.
        return await self._store_new(txn, event, input_event, kind, existing, known)

    def _is_invite_from_elsewhere(self, event: Event) -> bool:
        """An invite of one of our users by another server's user."""
        target = event.state_key or ""
        return (event.membership == "invite" and target.split(":", 1)[-1] == self._server_name
                and event.origin != self._server_name)

    async def _is_our_rejoin(self, txn: Txn, room: RoomRecord, event: Event,
                             input_event: input_log_pb2.InputRoomEvent) -> bool:
        """One of our users' joins made through another server (make_join /
        send_join), input with the room's state as that server gave it,
        while none of our users is in the room (what we hold of the room is
        then out of date; with one of ours joined, ours is current)."""
        return (input_event.has_state and event.membership == "join" and event.state_key == event.sender
                and event.sender.endswith(":" + self._server_name)
                and not await self._has_local_member(txn, room))

    async def _has_local_member(self, txn: Txn, room: RoomRecord) -> bool:
        """Whether one of our users is joined (else the room's servers send
        us nothing, and what we hold of its state is out of date)."""
        suffix = ":" + self._server_name
        return any(row.target_user_id.endswith(suffix)
                   for row in await self._db.memberships_in_room(txn, room.room_nid, joined_only=True))

    def _is_own_membership_elsewhere(self, event: Event) -> bool:
        """One of our users' own leave or knock (a rejected remote invite, a
        knock through another server): the federation API made it with a
        server in the room, for a room this server may not be in."""
        return (event.membership in ("leave", "knock") and event.state_key == event.sender
                and event.sender.split(":", 1)[-1] == self._server_name)

    async def _store_membership_elsewhere(self, txn: Txn, event: Event, room: RoomRecord | None,
                                          known: dict[str, EventRecord]
                                          ) -> tuple[pb.InputEventResult, _Unsent | None]:
        """Our user's leave or knock in a room this server has no state of:
        stored as an outlier of a stub room, the user's membership set, and
        a rejected invite (or a retracted knock) retired for readers
        (server-server API "Leaving Rooms (Rejecting Invites)"). Readers get
        a knock as a NewInviteEvent of the knock, with the
        ``knock_room_state`` the room's server answered (in its unsigned)."""
        version = event.room_version.identifier
        if room is None:
            room_nid = await self._db.create_room(txn, event.room_id, version)
            room = await self._db.room_by_nid(txn, room_nid)
            assert room is not None
        elif room.room_version != version:
            raise InvalidInput(f"room {room.room_id} has version {room.room_version}, the input says {version}")
        assert event.state_key is not None
        prior = await self._db.membership_of(txn, room.room_nid, event.state_key)
        invite = None
        if prior is not None and prior.membership in ("invite", "knock"):
            invite = (await self._db.event_records_by_nid(txn, [prior.event_nid])).get(prior.event_nid)
        is_knock = event.membership == "knock"
        type_nid = (await self._db.type_nids(txn, [event.type], create=True))[event.type]
        target_nid = (await self._db.state_key_nids(txn, [event.state_key], create=True))[event.state_key]
        event_nid = await self._db.insert_event(
            txn, event, room_nid=room.room_nid, type_nid=type_nid, state_key_nid=target_nid,
            auth_event_nids=[known[a].event_nid for a in event.auth_event_ids if a in known],
            is_outlier=True, is_rejected=False, is_soft_failed=False, rejection_reason=None,
            state_before_nid=None, state_after_nid=None, sent_to_output=invite is None and not is_knock)
        await self._db.set_membership(txn, room.room_nid, target_nid, event.membership or "leave", event_nid)
        result = pb.InputEventResult(event_id=event.event_id, outcome=ACCEPTED)
        if invite is None and not is_knock:
            return result, None
        payloads = []
        if invite is not None:
            output = output_log_pb2.OutputEvent(retire_invite_event=output_log_pb2.RetireInviteEvent(
                event_id=invite.event_id, room_id=room.room_id, target_user_id=event.state_key,
                membership=event.membership or "leave", retired_by_event_id=event.event_id))
            payloads.append(output.SerializeToString())
        if is_knock:
            shown = event.unsigned.get("knock_room_state")
            knock_state = [encode_canonical_json(s, strict=False) for s in shown if isinstance(s, dict)] \
                if isinstance(shown, list) else []
            output = output_log_pb2.OutputEvent(new_invite_event=output_log_pb2.NewInviteEvent(
                event=event_to_proto(event), target_user_id=event.state_key, invite_room_state_json=knock_state))
            payloads.append(output.SerializeToString())
        await self._db.add_to_outbox(txn, room.room_nid, event_nid, payloads)
        return result, _Unsent(event_nid, room.room_id, payloads)

    async def _store_remote_invite(self, txn: Txn, event: Event, room: RoomRecord | None,
                                   known: dict[str, EventRecord]) -> tuple[pb.InputEventResult, _Unsent | None]:
        """An invite over federation to a room this server is not in (server-
        server API "Inviting to a room"): the federation API checked its
        signatures; its auth events are the inviting server's. It is stored
        as an outlier of a stub room (no state), the user's membership
        becomes "invite", and readers get it with the stripped state the
        inviting server sent in ``unsigned.invite_room_state``."""
        version = event.room_version.identifier
        if room is None:
            room_nid = await self._db.create_room(txn, event.room_id, version)
            room = await self._db.room_by_nid(txn, room_nid)
            assert room is not None
        elif room.room_version != version:
            raise InvalidInput(f"room {room.room_id} has version {room.room_version}, the input says {version}")
        assert event.state_key is not None
        type_nid = (await self._db.type_nids(txn, [event.type], create=True))[event.type]
        target_nid = (await self._db.state_key_nids(txn, [event.state_key], create=True))[event.state_key]
        event_nid = await self._db.insert_event(
            txn, event, room_nid=room.room_nid, type_nid=type_nid, state_key_nid=target_nid,
            auth_event_nids=[known[a].event_nid for a in event.auth_event_ids if a in known],
            is_outlier=True, is_rejected=False, is_soft_failed=False, rejection_reason=None,
            state_before_nid=None, state_after_nid=None)
        if room.state_snapshot_nid is None or not await self._has_local_member(txn, room):
            await self._db.set_membership(txn, room.room_nid, target_nid, "invite", event_nid)
        stripped = event.unsigned.get("invite_room_state")
        invite_state = [encode_canonical_json(s, strict=False) for s in stripped if isinstance(s, dict)] \
            if isinstance(stripped, list) else []
        output = output_log_pb2.OutputEvent(new_invite_event=output_log_pb2.NewInviteEvent(
            event=event_to_proto(event), target_user_id=event.state_key, invite_room_state_json=invite_state))
        payloads = [output.SerializeToString()]
        await self._db.add_to_outbox(txn, room.room_nid, event_nid, payloads)
        return (pb.InputEventResult(event_id=event.event_id, outcome=ACCEPTED),
                _Unsent(event_nid, room.room_id, payloads))

    async def _room_for(self, txn: Txn, event: Event) -> RoomRecord:
        room = await self._db.room_by_id(txn, event.room_id)
        version = event.room_version.identifier
        if room is None:
            if event.type != CREATE or event.state_key != "":
                raise InvalidInput(f"unknown room {event.room_id} (and {event.event_id} is not its create event)")
            content_version = event.content.get("room_version", "1")
            if content_version != version:
                raise InvalidInput(f"the create event names room version {content_version!r}, "
                                   f"the input says {version!r}")
            room_nid = await self._db.create_room(txn, event.room_id, version)
            room = await self._db.room_by_nid(txn, room_nid)
            assert room is not None
        elif room.room_version != version:
            raise InvalidInput(f"room {room.room_id} has version {room.room_version}, the input says {version}")
        return room

    async def _store_new(self, txn: Txn, event: Event, input_event: input_log_pb2.InputRoomEvent,
                         kind: int, outlier: EventRecord | None, known: dict[str, EventRecord]
                         ) -> tuple[pb.InputEventResult, _Unsent | None]:
        room = await self._room_for(txn, event)
        if (event.type == CREATE and event.state_key == "" and room.create_event_nid is not None
                and outlier is None):
            raise InvalidInput(f"room {room.room_id} already has a create event")
        rv = event.room_version
        create_event = await self._create_event(txn, room)
        # Interned before the checks: a new member's user ID, unknown until
        # now, is then found by the auth state lookups (before and current)
        # in this transaction instead of being looked for in the table again.
        type_nid = (await self._db.type_nids(txn, [event.type], create=True))[event.type]
        state_key_nid: int | None = None
        if event.state_key is not None:
            state_key_nid = (await self._db.state_key_nids(txn, [event.state_key], create=True))[event.state_key]
        checked = await self._check(txn, room, event, input_event, kind, create_event, known)

        is_rejected = checked.rejected_reason is not None
        # Only accepted timeline events have output.
        no_output = is_rejected or checked.soft_failed or kind == OUTLIER
        inserted: dict[str, Any] = {}
        if outlier is not None:
            event_nid = outlier.event_nid
            await self._db.update_event(
                txn, event_nid, is_outlier=False, is_rejected=is_rejected, is_soft_failed=checked.soft_failed,
                rejection_reason=checked.rejected_reason, state_before_nid=checked.state_before_nid)
        else:
            # What is known already is written with the row, not updated after.
            if checked.state_before_nid is not None and (is_rejected or state_key_nid is None):
                inserted["state_after_nid"] = checked.state_before_nid
            if kind == NEW and not no_output:
                inserted["stream_position"] = room.last_stream_position + 1
            event_nid = await self._db.insert_event(
                txn, event, room_nid=room.room_nid, type_nid=type_nid, state_key_nid=state_key_nid,
                auth_event_nids=checked.auth_nids, is_outlier=kind == OUTLIER, is_rejected=is_rejected,
                is_soft_failed=checked.soft_failed, rejection_reason=checked.rejected_reason,
                state_before_nid=checked.state_before_nid, state_after_nid=inserted.get("state_after_nid"),
                stream_position=inserted.get("stream_position"), sent_to_output=no_output)
        if event.type == CREATE and event.state_key == "" and not is_rejected:
            await self._db.update_room(txn, room.room_nid, create_event_nid=event_nid)

        # The state after: rejected events change nothing.
        state_after_nid = checked.state_before_nid
        state_after = checked.state_before
        if checked.state_before is not None and state_key_nid is not None and not is_rejected:
            state_after = dict(checked.state_before)
            state_after[(type_nid, state_key_nid)] = event_nid
            state_after_nid = await self._db.save_state(txn, room.room_nid, state_after,
                                                        checked.state_before_nid)
        # Written once, at the end.
        updates: dict[str, Any] = {}
        if state_after_nid is not None:
            updates["state_after_nid"] = state_after_nid

        outputs: list[output_log_pb2.OutputEvent] = []
        if is_rejected:
            outcome = REJECTED
        elif kind == OUTLIER:
            outcome = ACCEPTED
        elif checked.soft_failed:
            outcome = SOFT_FAILED
        elif kind == OLD:
            outcome = ACCEPTED
            outputs = await self._historical_output(txn, room, event, event_nid, input_event,
                                                    checked.state_before, state_after, updates)
        else:
            outcome = ACCEPTED
            assert state_after is not None and state_after_nid is not None
            outputs = await self._advance_room(txn, room, event, event_nid, checked, state_after,
                                               state_after_nid, input_event, rv, updates)
        payloads = [o.SerializeToString() for o in outputs]
        if payloads:
            await self._db.add_to_outbox(txn, room.room_nid, event_nid, payloads)
        else:
            if outlier is not None or not no_output:
                updates["sent_to_output"] = True
        updates = {k: v for k, v in updates.items() if k not in inserted or inserted[k] != v}
        if updates:
            await self._db.update_event(txn, event_nid, **updates)
        result = pb.InputEventResult(event_id=event.event_id, outcome=outcome,
                                     reason=checked.rejected_reason or
                                     ("soft-failed against the current state" if checked.soft_failed else ""))
        return result, (_Unsent(event_nid, room.room_id, payloads) if payloads else None)

    async def _create_event(self, txn: Txn, room: RoomRecord) -> Event | None:
        if room.create_event_nid is None:
            return None
        return (await self._db.events_by_nid(txn, [room.create_event_nid])).get(room.create_event_nid)

    # -- checks --------------------------------------------------------------

    async def _check(self, txn: Txn, room: RoomRecord, event: Event,
                     input_event: input_log_pb2.InputRoomEvent, kind: int,
                     create_event: Event | None, known: dict[str, EventRecord]) -> _Checked:
        checked = _Checked()
        rv = event.room_version

        # 1. Against the event's own auth events (all must be known).
        auth_ids = list(dict.fromkeys(event.auth_event_ids))
        auth_records = {a: known[a] for a in auth_ids if a in known}
        missing = [a for a in auth_ids if a not in auth_records]
        if missing:
            raise InvalidInput(f"unknown auth events: {', '.join(missing)}")
        checked.auth_nids = [auth_records[a].event_nid for a in auth_ids]
        if rv.hydra and event.type != CREATE and room.create_event_nid is not None:
            # v12 leaves the create event out of auth_events (the room ID names
            # it); the auth-chain index keeps it, as Synapse does, so auth
            # chains served over federation include it.
            checked.auth_nids.append(room.create_event_nid)
        loaded = await self._db.events_by_nid(txn, checked.auth_nids)
        auth_events = [loaded[auth_records[a].event_nid] for a in auth_ids]
        rejected_ids = {a for a, r in auth_records.items() if r.is_rejected}
        try:
            check_auth_events_list(event, auth_events, rejected_event_ids=rejected_ids)
            check_auth_rules(event, auth_state_from_auth_events(
                auth_events, create_event if rv.hydra else None))
        except AuthError as e:
            checked.rejected_reason = f"not allowed by its auth events: {e}"

        if kind == OUTLIER:
            return checked

        # 2. The state before the event.
        if input_event.has_state:
            state_ids = list(dict.fromkeys(input_event.state_event_ids))
            records = await self._db.event_records_by_id(txn, state_ids)
            unknown = [s for s in state_ids if s not in records]
            if unknown:
                raise InvalidInput(f"unknown state events: {', '.join(unknown[:10])}")
            state: StateMap = {}
            for record in records.values():
                if record.state_key_nid is None:
                    raise InvalidInput(f"{record.event_id} in the state is not a state event")
                if record.room_nid != room.room_nid:
                    raise InvalidInput(f"{record.event_id} in the state is from another room")
                state[(record.type_nid, record.state_key_nid)] = record.event_nid
            checked.state_before = state
            checked.state_before_nid = await self._db.save_state(txn, room.room_nid, state,
                                                                 room.state_snapshot_nid)
            # Known prev events stop being forward extremities all the same.
            checked.prev_records = [known[p] for p in dict.fromkeys(event.prev_event_ids)
                                    if p in known and known[p].room_nid == room.room_nid]
        else:
            prev_ids = list(dict.fromkeys(event.prev_event_ids))
            prev_records = {p: known[p] for p in prev_ids if p in known}
            without_state = [p for p in prev_ids
                             if p not in prev_records or prev_records[p].state_after_nid is None]
            if without_state and kind == OLD:
                # Backfill at the edge of what we know: stored without state.
                return checked
            if without_state:
                raise InvalidInput(f"unknown prev events (or prev events without state): "
                                   f"{', '.join(without_state[:10])}")
            records_list = [prev_records[p] for p in prev_ids]
            elsewhere = [r.event_id for r in records_list if r.room_nid != room.room_nid]
            if elsewhere:
                raise InvalidInput(f"prev events from another room: {', '.join(elsewhere[:10])}")
            checked.prev_records = records_list
            if not records_list:
                if event.type != CREATE:
                    raise InvalidInput("an event other than the create event has no prev_events")
                checked.state_before = {}
                checked.state_before_nid = await self._db.save_state(txn, room.room_nid, {}, None)
            else:
                snapshot_nids = {r.state_after_nid for r in records_list}
                checked.state_before = await self._state.state_after_events(txn, rv, records_list)
                if len(snapshot_nids) == 1:
                    checked.state_before_nid = records_list[0].state_after_nid
                else:
                    checked.state_before_nid = await self._db.save_state(
                        txn, room.room_nid, checked.state_before, records_list[0].state_after_nid)

        if checked.rejected_reason is not None:
            return checked

        # 3. Against the state before the event.
        try:
            check_auth_rules(event, await self._state.auth_state(txn, event, checked.state_before,
                                                                 create_event))
        except AuthError as e:
            checked.rejected_reason = f"not allowed by the state before it: {e}"
            return checked

        # 4. Against the current state (soft fail), for new events only; not
        # for our user's join over federation, which comes with the room's
        # state because what we hold of it is out of date (or none).
        # The state before the event being the current state (a message on
        # the room's latest event), that check was the one just passed.
        if kind == NEW and room.state_snapshot_nid is not None \
                and checked.state_before_nid != room.state_snapshot_nid \
                and not await self._is_our_rejoin(txn, room, event, input_event):
            current = await self._db.load_state(txn, room.state_snapshot_nid)
            try:
                check_auth_rules(event, await self._state.auth_state(txn, event, current, create_event))
            except AuthError as e:
                logger.info("soft-failing %s: %s", event.event_id, e)
                checked.soft_failed = True
        return checked

    # -- the room's new state ------------------------------------------------

    async def _advance_room(self, txn: Txn, room: RoomRecord, event: Event, event_nid: int,
                            checked: _Checked, state_after: StateMap, state_after_nid: int,
                            input_event: input_log_pb2.InputRoomEvent, rv: RoomVersion,
                            updates: dict[str, Any]) -> list[output_log_pb2.OutputEvent]:
        prev_nids = {r.event_nid for r in checked.prev_records}
        # An event some known event already names as a prev event is not an extremity.
        referenced = (await self._db.children_of(txn, [event.event_id])).get(event.event_id)
        # Our user's join over federation comes with the room's state, which
        # replaces what we held (an old copy, from before our users left):
        # our old forward extremities are not the room's any more.
        extremities = [] if await self._is_our_rejoin(txn, room, event, input_event) else [
            e for e in room.forward_extremities if e not in prev_nids]
        if not referenced:
            extremities.append(event_nid)
        extremities = sorted(set(extremities))

        if extremities == [event_nid]:
            new_state, new_nid = state_after, state_after_nid
        else:
            records = list((await self._db.event_records_by_nid(txn, extremities)).values())
            for record in records:
                if record.event_nid == event_nid:
                    # Not written to the row yet (see ``updates``).
                    record.state_after_nid = state_after_nid
            new_state = await self._state.state_after_events(txn, rv, records)
            new_nid = await self._db.save_state(txn, room.room_nid, new_state, room.state_snapshot_nid)
        if new_nid == room.state_snapshot_nid:
            # The same snapshot (a message on the latest event): the same
            # state, without comparing every entry of it (a big room's).
            old_state, added, removed = new_state, {}, {}
        else:
            old_state = await self._db.load_state(txn, room.state_snapshot_nid)
            added = {k: v for k, v in new_state.items() if old_state.get(k) != v}
            removed = {k: v for k, v in old_state.items() if new_state.get(k) != v}

        prior_membership = None
        if event.type == MEMBER and event.state_key is not None:
            # An invite received over federation into a stub room is only in
            # the membership table, not in any state.
            prior_membership = await self._db.membership_of(txn, room.room_nid, event.state_key)
        await self._update_memberships(txn, room.room_nid, added, removed)
        position = room.last_stream_position + 1
        await self._db.update_room(txn, room.room_nid, state_snapshot_nid=new_nid,
                                   forward_extremities=extremities, last_sent_event_id=event.event_id,
                                   last_stream_position=position)
        updates["stream_position"] = position

        # The IDs of the NIDs named below; this event and its prev events are known.
        ids_by_nid = {event_nid: event.event_id, **{r.event_nid: r.event_id for r in checked.prev_records}}
        wanted = (set(added.values()) | set(removed.values()) | set(extremities)) - ids_by_nid.keys()
        if wanted:
            ids_by_nid.update({n: r.event_id for n, r in (await self._db.event_records_by_nid(txn, wanted)).items()})
        added_events = await self._db.events_by_nid(txn, [n for n in added.values() if n != event_nid])
        adds_state_events: list[events_pb2.Event] = []
        budget = MAX_GIVEN_STATE_BYTES if input_event.has_state else MAX_ADDED_STATE_BYTES
        for added_event in added_events.values():
            proto = event_to_proto(added_event)
            budget -= proto.ByteSize()
            if budget < 0:
                # Too much for one log record (a join with a big room's state):
                # readers fetch what they miss by ID.
                adds_state_events = []
                break
            adds_state_events.append(proto)
        history_visibility = await self._history_visibility_at(txn, event, checked.state_before, new_state)
        late_redactions = await self._late_redactions(txn, room, event, event_nid)
        new_room_event = output_log_pb2.NewRoomEvent(
            # Readers never see content a redaction already removed.
            event=event_to_proto(event, redacted=bool(late_redactions)),
            adds_state_event_ids=[ids_by_nid[n] for n in added.values()],
            removes_state_event_ids=[ids_by_nid[n] for n in removed.values()],
            latest_event_ids=[ids_by_nid[n] for n in extremities],
            last_sent_event_id=room.last_sent_event_id,
            history_visibility=history_visibility,
            adds_state_events=adds_state_events,
            room_stream_position=position,
            origin=input_event.origin,
        )
        if input_event.HasField("transaction_id"):
            new_room_event.transaction_id.CopyFrom(input_event.transaction_id)
        outputs = [output_log_pb2.OutputEvent(new_room_event=new_room_event)]
        outputs.extend(await self._membership_outputs(txn, room, event, event_nid, added, old_state,
                                                      new_state, prior_membership))
        redaction = await self._redaction_output(txn, room, event, event_nid, checked.state_before)
        if redaction is not None:
            outputs.append(redaction)
        outputs.extend(late_redactions)
        return outputs

    async def _historical_output(self, txn: Txn, room: RoomRecord, event: Event, event_nid: int,
                                 input_event: input_log_pb2.InputRoomEvent, state_before: StateMap | None,
                                 state_after: StateMap | None,
                                 updates: dict[str, Any]) -> list[output_log_pb2.OutputEvent]:
        position = room.last_stream_position + 1
        await self._db.update_room(txn, room.room_nid, last_sent_event_id=event.event_id,
                                   last_stream_position=position)
        updates["stream_position"] = position
        extremities = await self._db.event_records_by_nid(txn, room.forward_extremities)
        visibility = await self._history_visibility_at(txn, event, state_before, state_after)
        late_redactions = await self._late_redactions(txn, room, event, event_nid)
        redaction = await self._redaction_output(txn, room, event, event_nid, state_before)
        if redaction is not None:
            late_redactions.append(redaction)
        return [output_log_pb2.OutputEvent(new_room_event=output_log_pb2.NewRoomEvent(
            event=event_to_proto(event, redacted=bool(late_redactions)),
            latest_event_ids=[r.event_id for r in extremities.values()],
            last_sent_event_id=room.last_sent_event_id,
            history_visibility=visibility,
            room_stream_position=position,
            historical=True,
            origin=input_event.origin,
        )), *late_redactions]

    async def _history_visibility_at(self, txn: Txn, event: Event, state_before: StateMap | None,
                                     state_after: StateMap | None) -> str:
        """The visibility before the event; for a history visibility event,
        the more permissive of the old and new values (as Synapse does)."""
        before = await self._state_event(txn, state_before, HISTORY_VISIBILITY, "")
        value = history_visibility_of(before)
        if is_history_visibility(event):
            value = more_permissive(value, history_visibility_of(event))
        return value

    async def _state_event(self, txn: Txn, state: StateMap | None, event_type: str,
                           state_key: str) -> Event | None:
        if not state:
            return None
        key = (await self._db.state_tuple_nids(txn, [(event_type, state_key)], create_types=True)
               ).get((event_type, state_key))
        if key is None or key not in state:
            return None
        return (await self._db.events_by_nid(txn, [state[key]])).get(state[key])

    async def _update_memberships(self, txn: Txn, room_nid: int, added: StateMap, removed: StateMap) -> None:
        member_type = (await self._db.type_nids(txn, [MEMBER], create=True)).get(MEMBER)
        if member_type is None:
            return
        added_members = {k: v for k, v in added.items() if k[0] == member_type}
        if added_members:
            loaded = await self._db.events_by_nid(txn, set(added_members.values()))
            rows: dict[int, tuple[str, int]] = {}
            for (_, target_nid), event_nid in added_members.items():
                member_event = loaded.get(event_nid)
                membership = (member_event.membership if member_event is not None else None) or "leave"
                rows[target_nid] = (membership, event_nid)
            await self._db.set_memberships(txn, room_nid, rows)
        gone = [key[1] for key in removed if key[0] == member_type and key not in added]
        if gone:
            await self._db.delete_memberships(txn, room_nid, gone)

    async def _membership_outputs(self, txn: Txn, room: RoomRecord, event: Event, event_nid: int,
                                  added: StateMap, old_state: StateMap, new_state: StateMap,
                                  prior_membership: MembershipRow | None) -> list[output_log_pb2.OutputEvent]:
        if event.type != MEMBER or event.state_key is None:
            return []
        key = (await self._db.state_tuple_nids(txn, [(MEMBER, event.state_key)])).get((MEMBER, event.state_key))
        if key is None or added.get(key) != event_nid:
            return []
        outputs: list[output_log_pb2.OutputEvent] = []
        previous = None
        previous_nid = old_state.get(key)
        if previous_nid is None and prior_membership is not None:
            previous_nid = prior_membership.event_nid
        if previous_nid is not None:
            previous = (await self._db.events_by_nid(txn, [previous_nid])).get(previous_nid)
        if event.membership == "invite":
            invite_state = await self._invite_room_state(txn, event, new_state)
            outputs.append(output_log_pb2.OutputEvent(new_invite_event=output_log_pb2.NewInviteEvent(
                event=event_to_proto(event), target_user_id=event.state_key,
                invite_room_state_json=invite_state)))
        elif previous is not None and previous.membership == "invite":
            outputs.append(output_log_pb2.OutputEvent(retire_invite_event=output_log_pb2.RetireInviteEvent(
                event_id=previous.event_id, room_id=room.room_id, target_user_id=event.state_key,
                membership=event.membership or "", retired_by_event_id=event.event_id)))
        return outputs

    async def _invite_room_state(self, txn: Txn, event: Event, state: StateMap) -> list[bytes]:
        wanted = [(t, "") for t in _INVITE_STATE_TYPES] + [(MEMBER, event.sender)]
        keys = await self._db.state_tuple_nids(txn, wanted, create_types=True)
        nids = [state[k] for k in keys.values() if k in state]
        loaded = await self._db.events_by_nid(txn, nids)
        return [encode_canonical_json(stripped_state(loaded[n]), strict=False) for n in nids if n in loaded]

    async def _redaction_output(self, txn: Txn, room: RoomRecord, event: Event, event_nid: int,
                                state_before: StateMap | None) -> output_log_pb2.OutputEvent | None:
        """Applies an accepted redaction to its target, or keeps it for when
        the target arrives."""
        target_id = event.redacts
        if target_id is None:
            return None
        target_record = (await self._db.event_records_by_id(txn, [target_id])).get(target_id)
        if target_record is None:
            await self._db.add_pending_redaction(txn, event_nid, target_id)
            return None
        if target_record.room_nid != room.room_nid or target_record.redacted_by:
            return None
        target = (await self._db.events_by_nid(txn, [target_record.event_nid])).get(target_record.event_nid)
        if target is None or not await self._redaction_allowed(txn, event, target, state_before):
            return None
        await self._db.update_event(txn, target_record.event_nid, redacted_by=event.event_id)
        return output_log_pb2.OutputEvent(redacted_event=output_log_pb2.RedactedEvent(
            redacted_event_id=target_id, redaction_event_id=event.event_id,
            redacted_event=event_to_proto(target, redacted=True)))

    async def _redaction_allowed(self, txn: Txn, redaction: Event, target: Event,
                                 state_before: StateMap | None) -> bool:
        """Spec (client-server "Redactions", server-server "Validating a
        redaction"): it applies when it comes from the server of the event it
        redacts, or when its sender's power level allows redacting others'
        events in the state before the redaction."""
        if target.origin == redaction.origin:
            return True
        if state_before is None:
            return False
        auth_state = await self._state.auth_state(txn, redaction, state_before, None)
        levels = PowerLevels.from_state(auth_state, redaction.room_version)
        return levels.user_level(redaction.sender) >= levels.redact

    async def _late_redactions(self, txn: Txn, room: RoomRecord, event: Event, event_nid: int
                               ) -> list[output_log_pb2.OutputEvent]:
        """Redactions accepted before ``event`` arrived, applied to it now."""
        waiting = await self._db.pending_redactions_of(txn, event.event_id)
        if not waiting:
            return []
        await self._db.delete_pending_redactions(txn, event.event_id)
        records = await self._db.event_records_by_nid(txn, waiting)
        loaded = await self._db.events_by_nid(txn, waiting)
        for nid in sorted(waiting):
            record, redaction = records.get(nid), loaded.get(nid)
            if record is None or redaction is None or record.room_nid != room.room_nid or not record.is_accepted:
                continue
            state_before = (await self._db.load_state(txn, record.state_before_nid)
                            if record.state_before_nid is not None else None)
            if await self._redaction_allowed(txn, redaction, event, state_before):
                await self._db.update_event(txn, event_nid, redacted_by=redaction.event_id)
                return [output_log_pb2.OutputEvent(redacted_event=output_log_pb2.RedactedEvent(
                    redacted_event_id=event.event_id, redaction_event_id=redaction.event_id,
                    redacted_event=event_to_proto(event, redacted=True)))]
        return []

    # -- the outbox ----------------------------------------------------------

    async def _send(self, unsent: Sequence[_Unsent]) -> None:
        """Appends what these events wrote to the outbox, in order. Forgetting
        it (deleting the outbox rows, marking the events sent) is left to a
        timer (``FORGET_SENT_DELAY_SECONDS``) or, when much waits, to the next
        input transaction: a crash before that only appends the output again
        at the next start, and readers dedupe by event ID. What could not be
        appended stays for later."""
        # Appended already, only not yet forgotten: not again.
        unsent = [u for u in unsent if not (u.payloads is None and u.event_nid in self._sent_unmarked)]
        if not unsent:
            return
        if any(u.payloads is None for u in unsent):
            await self.send_pending([u.event_nid for u in unsent])
            return
        sent: list[int] = []
        by_room: list[tuple[str, list[_Unsent]]] = []
        for item in unsent:
            if by_room and by_room[-1][0] == item.room_id:
                by_room[-1][1].append(item)
            else:
                by_room.append((item.room_id, [item]))
        for room_id, items in by_room:
            try:
                await self._producer.send_many(room_id, [p for item in items for p in item.payloads or []])
            except Exception:
                logger.exception("appending output for %d events of %s failed; kept for later",
                                 len(items), room_id)
                break
            sent.extend(item.event_nid for item in items)
        if sent:
            self._sent_unmarked.update(sent)
            self._schedule_forget()

    def _schedule_forget(self) -> None:
        if self._forget_task is None or self._forget_task.done():
            self._forget_task = asyncio.create_task(self._forget_later())

    async def _forget_later(self) -> None:
        await asyncio.sleep(FORGET_SENT_DELAY_SECONDS)
        try:
            await self.forget_sent()
        except Exception:
            logger.warning("could not forget sent output; the next input transaction will", exc_info=True)
        now = time.monotonic()
        if now - self._transactions_forgotten_at >= FORGET_TRANSACTIONS_EVERY_SECONDS:
            self._transactions_forgotten_at = now
            try:
                await self._db.forget_old_transactions(int(time.time() * 1000) - TRANSACTION_TTL_MS)
            except Exception:
                logger.warning("could not delete old transaction IDs; will try again later", exc_info=True)

    async def forget_sent(self) -> None:
        """Deletes the outbox rows of output already appended and marks their
        events sent, in a transaction of its own (see ``_send``)."""
        if not self._sent_unmarked:
            return
        async with self._db.transaction() as txn:
            forgotten = await self._forget_sent(txn)
        self._sent_unmarked.difference_update(forgotten)

    async def _forget_sent(self, txn: Txn) -> set[int]:
        """In ``txn``: forgets the output appended since the last time. The
        caller drops the answered NIDs from ``_sent_unmarked`` once ``txn``
        has committed (see ``process_records``)."""
        forgotten = set(self._sent_unmarked)
        if forgotten:
            await self._db.mark_events_sent(txn, forgotten)
        return forgotten

    async def close(self) -> None:
        """Forgets what was sent (so a restart does not send it again)."""
        if self._forget_task is not None:
            self._forget_task.cancel()
        await self.forget_sent()

    async def send_pending(self, event_nids: Sequence[int] | None = None) -> int:
        """Appends the outbox entries of ``event_nids`` (all when None) to
        ``roomserver.output``, then forgets them; answers how many."""
        async with self._db.reading() as txn:
            pending = await self._db.outbox_for_events(txn, event_nids)
            room_ids = await self._db.room_ids_by_nid(txn, {room_nid for _, room_nid, _, _ in pending})
        if not pending:
            if event_nids:
                async with self._db.transaction() as txn:
                    await self._db.mark_sent(txn, [], event_nids)
            return 0
        sent: list[int] = []
        unsent_events: set[int] = set()
        for outbox_nid, room_nid, event_nid, payload in pending:
            if unsent_events:
                unsent_events.add(event_nid)
                continue
            try:
                await self._producer.send(room_ids[room_nid], payload)
            except Exception:
                # Kept in the outbox: sent again at the next start or when
                # the event is input again. The events are committed, so the
                # input's outcome stands.
                logger.exception("appending output for event NID %d failed; kept for later", event_nid)
                unsent_events.add(event_nid)
                continue
            sent.append(outbox_nid)
        sent_set = set(sent)
        done_events = {e for o, _, e, _ in pending if o in sent_set} - unsent_events
        async with self._db.transaction() as txn:
            await self._db.mark_sent(txn, sent, done_events)
        return len(sent)
