"""The room server's storage facade: the only thing ``roomserver/internal``
imports from storage. It owns transactions and the in-memory caches.

Everything the room server reasons about is numeric: rooms, events, event
types and state keys have NIDs, and a state map is ``{(type_nid,
state_key_nid): event_nid}``. Names are looked up only at the edges (parsing
input, answering queries).

Caches hold only what cannot change once committed: interned names, parsed
events, state snapshots, room versions and events' IDs and depths. A room
server that is the only writer of its database (``sole_writer``: the
single process with the embedded log, which no other process consumes, or
the one instance registered on PostgreSQL: ``writer_registration.py``)
also keeps the rooms' rows, as its write transactions committed them, so
that building an event reads nothing (see ``cached_room``). What a transaction learns enters
the shared caches only when it commits: a rolled-back insert (or savepoint)
can hand its NID out again on SQLite, so a cache filled before the commit
could name the wrong row. Until then it lives in the transaction's own
``Txn.local`` cache, dropped on rollback (``Txn.savepoint``).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, delete, func, literal, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection

from common.lru_cache import LRUCache
from common.prebuilt import PostgresStatement, PrebuiltStatement
from common.storage import Database
from matrixlib.events import Event
from matrixlib.room_versions import get_room_version
from roomserver.storage.tables import membership as membership_t
from roomserver.storage.tables.aliases import room_aliases
from roomserver.storage.tables.events import (
    INSERT_EVENT_WITH_EDGES_PG,
    INSERT_EVENT_WITH_EDGES_PG_NAMES,
    NEW_EVENT_COLUMNS,
    PREFETCH_PG,
    PREFETCH_PG_NAMES,
    WRITE_HELD_PG,
    WRITE_HELD_PG_NAMES,
    auth_chain_query,
    auth_events,
    event_json,
    events,
    prev_events,
)
from roomserver.storage.tables.input_failures import input_failures
from roomserver.storage.tables.interned import event_state_keys, event_types, intern_pg
from roomserver.storage.tables.membership import membership
from roomserver.storage.tables.outbox import output_outbox
from roomserver.storage.tables.redactions import pending_redactions
from roomserver.storage.tables.rooms import rooms
from roomserver.storage.tables.state import (
    INSERT_SNAPSHOT_PG,
    INSERT_SNAPSHOT_PG_NAMES,
    state_entries,
    state_snapshots,
)
from roomserver.storage.tables.transactions import KEY_COLUMNS, transactions

_R = TypeVar("_R", "EventRecord", "RoomRecord")

#: A state map in numeric form: (type NID, state key NID) -> event NID.
StateMap = dict[tuple[int, int], int]
#: A local client's transaction: (room ID, user ID, device ID, scope, transaction ID).
TransactionKey = tuple[str, str, str, str, str]

#: A new full snapshot is written after ``max_delta_depth(len(state))`` deltas:
#: at least MIN_DELTA_DEPTH, at most MAX_DELTA_DEPTH, and about one delta per
#: DELTA_DEPTH_DIVISOR entries of state in between. A big room thus writes a
#: full copy rarely (a 10,000-member room every 512 state changes, about 20
#: rows per change), and loading reads at most the base plus that many deltas.
MIN_DELTA_DEPTH = 16
MAX_DELTA_DEPTH = 512
DELTA_DEPTH_DIVISOR = 16


def max_delta_depth(state_size: int) -> int:
    return max(MIN_DELTA_DEPTH, min(MAX_DELTA_DEPTH, state_size // DELTA_DEPTH_DIVISOR))


# How many parsed events and loaded state snapshots stay in memory. A parsed
# event costs about 3.5 KB (five times its JSON); a snapshot about 40-70 bytes
# per state entry, so snapshots are also bounded by their entries in total
# (256 snapshots of a 1,000-member room held 18 MB). What input and queries
# reuse is the current state and auth events of the rooms being written to.
EVENT_CACHE_SIZE = 1_000
# How many state snapshots' delta depths stay in memory (a few ints each).
SNAPSHOT_DEPTH_CACHE_SIZE = 100_000
SNAPSHOT_CACHE_SIZE = 256
SNAPSHOT_CACHE_ENTRIES = 20_000
# How many rooms' rows (sole writer only, ~0.5 KB each) and events' (ID,
# depth) (~0.25 KB each; only rooms' forward extremities are looked up, so
# recent events) stay in memory.
ROOM_CACHE_SIZE = 5_000
EVENT_HEAD_CACHE_SIZE = 10_000
# Rooms whose answers to "is a user of this server joined?" stay in memory
# (sole writer only; see ``server_joined``).
SERVER_JOINED_CACHE_SIZE = 5_000

# SQLite allows 32766 bound parameters per statement; stay well below.
_CHUNK = 500

# The hottest statements (several per input event or query), built once:
# building a statement anew costs more than running it from the compiled cache.
_EVENTS_BY_ID = select(events).where(events.c.event_id.in_(bindparam("ids", expanding=True)))
_EVENTS_BY_NID = select(events).where(events.c.event_nid.in_(bindparam("nids", expanding=True)))
_ROOM_BY_ID = select(rooms).where(rooms.c.room_id == bindparam("room_id"))
# What the batch's events are named by (as a prev event: kind 0; as a
# redaction's target: kind 1), in one statement.
_NAMED_BY = union_all(
    select(prev_events.c.prev_event_id.label("named"), prev_events.c.event_nid.label("by"),
           literal(0).label("kind")).where(prev_events.c.prev_event_id.in_(bindparam("ids", expanding=True))),
    select(pending_redactions.c.redacts_event_id, pending_redactions.c.redaction_event_nid, literal(1))
    .where(pending_redactions.c.redacts_event_id.in_(bindparam("ids", expanding=True))))
_INSERT_EVENT = events.insert().returning(events.c.event_nid)
# The statements every input event or batch runs, on the inline SQLite
# driver's own cursor (common/prebuilt.py); through SQLAlchemy elsewhere.
_INSERT_NEW_EVENT = PrebuiltStatement(_INSERT_EVENT, NEW_EVENT_COLUMNS)
# PostgreSQL: a new event with its JSON and edges; the outbox and rooms' rows at the commit.
_INSERT_EVENT_WITH_EDGES_PG = PostgresStatement(INSERT_EVENT_WITH_EDGES_PG, INSERT_EVENT_WITH_EDGES_PG_NAMES)
_WRITE_HELD_PG = PostgresStatement(WRITE_HELD_PG, WRITE_HELD_PG_NAMES)
# What a held new event's row can take before it is written (redacted_by cannot).
_HELD_EVENT_COLUMNS = frozenset(NEW_EVENT_COLUMNS)
_ROOM_BY_ID_PREBUILT = PrebuiltStatement(_ROOM_BY_ID)
# The reads of every sent event's query (latest events and state) and of input.
_EVENTS_BY_NID_PREBUILT = PrebuiltStatement(_EVENTS_BY_NID)
_EVENT_JSON_BY_NID = PrebuiltStatement(
    select(event_json.c.event_nid, event_json.c.event_json, events.c.event_id, rooms.c.room_version)
    .join(events, events.c.event_nid == event_json.c.event_nid)
    .join(rooms, rooms.c.room_nid == events.c.room_nid)
    .where(event_json.c.event_nid.in_(bindparam("nids", expanding=True))))
_PREFETCH_PG = PostgresStatement(PREFETCH_PG, PREFETCH_PG_NAMES)
# Every state change (a join: a new user's ID interned, a snapshot written,
# the membership read and written, the event's row updated).
_INTERN_PG = {table: PostgresStatement(intern_pg(table, name, nid), ("names",))
              for table, name, nid in ((event_types, "event_type", "type_nid"),
                                       (event_state_keys, "state_key", "state_key_nid"))}
_NAMES_PREBUILT = {table: PrebuiltStatement(select(table.c[name], table.c[nid]).where(
    table.c[name].in_(bindparam("names", expanding=True))))
    for table, name, nid in ((event_types, "event_type", "type_nid"),
                             (event_state_keys, "state_key", "state_key_nid"))}
_INSERT_SNAPSHOT_PG = PostgresStatement(INSERT_SNAPSHOT_PG, INSERT_SNAPSHOT_PG_NAMES)
_MEMBERSHIP_OF = PrebuiltStatement(select(membership.c.membership, membership.c.event_nid).where(
    membership.c.room_nid == bindparam("room_nid"), membership.c.target_nid == bindparam("target_nid")))
# UPDATE of an event's row, by the columns it sets (a handful of combinations).
_UPDATE_EVENT: dict[tuple[str, ...], PrebuiltStatement] = {}


def _update_event_statement(columns: tuple[str, ...]) -> PrebuiltStatement:
    statement = _UPDATE_EVENT.get(columns)
    if statement is None:
        statement = _UPDATE_EVENT[columns] = PrebuiltStatement(
            update(events).where(events.c.event_nid == bindparam("k_event_nid"))
            .values({name: bindparam(f"v_{name}") for name in columns}))
    return statement
_INSERT_HELD: dict[Table, PrebuiltStatement] = {
    event_json: PrebuiltStatement(event_json.insert(), ("event_nid", "event_json")),
    prev_events: PrebuiltStatement(prev_events.insert(), ("event_nid", "prev_event_id")),
    auth_events: PrebuiltStatement(auth_events.insert(), ("event_nid", "auth_event_nid")),
}
_INSERT_OUTBOX = PrebuiltStatement(output_outbox.insert(), ("room_nid", "event_nid", "payload"))
_INSERT_TRANSACTIONS = PrebuiltStatement(transactions.insert(), (*KEY_COLUMNS, "event_id", "added_ms"))
_TRANSACTION_OF = PrebuiltStatement(select(transactions.c.event_id).where(
    *(transactions.c[column] == bindparam(column) for column in KEY_COLUMNS)))
# The two reads of every input batch (``prefetch``).
_EVENTS_BY_ID_PREBUILT = PrebuiltStatement(_EVENTS_BY_ID)
_NAMED_BY_PREBUILT = PrebuiltStatement(_NAMED_BY)
# Forgetting sent output (once per input batch).
_DELETE_OUTBOX_OF_EVENTS = delete(output_outbox).where(
    output_outbox.c.event_nid.in_(bindparam("nids", expanding=True)))
_MARK_EVENTS_SENT = update(events).where(events.c.event_nid.in_(bindparam("nids", expanding=True))).values(
    sent_to_output=True)
_DELETE_OUTBOX_OF_EVENTS_PREBUILT = PrebuiltStatement(_DELETE_OUTBOX_OF_EVENTS)
_MARK_EVENTS_SENT_PREBUILT = PrebuiltStatement(_MARK_EVENTS_SENT)
_UPDATE_ROOM = update(rooms).where(rooms.c.room_nid == bindparam("k_room_nid")).values(
    create_event_nid=bindparam("v_create_event_nid"), state_snapshot_nid=bindparam("v_state_snapshot_nid"),
    forward_extremities=bindparam("v_forward_extremities"), last_sent_event_id=bindparam("v_last_sent_event_id"),
    last_stream_position=bindparam("v_last_stream_position"))
_UPDATE_ROOM_PREBUILT = PrebuiltStatement(_UPDATE_ROOM)


def _chunks(items: Collection[Any], size: int = _CHUNK) -> Iterable[list[Any]]:
    as_list = list(items)
    for start in range(0, len(as_list), size):
        yield as_list[start:start + size]


@dataclass
class TxnCache:
    """What one transaction learnt, published to the shared caches on commit."""

    events: dict[int, Event] = field(default_factory=dict)
    snapshots: dict[int, StateMap] = field(default_factory=dict)
    # Snapshot NID -> its delta depth (never changes once written).
    snapshot_depths: dict[int, int] = field(default_factory=dict)
    room_versions: dict[int, str] = field(default_factory=dict)
    type_nids: dict[str, int] = field(default_factory=dict)
    state_key_nids: dict[str, int] = field(default_factory=dict)
    # Rooms read or written in this transaction, kept up to date by
    # ``update_room`` (never published: another instance may write them later).
    rooms: dict[str, RoomRecord] = field(default_factory=dict)
    # For the event IDs in ``prefetched`` (see ``RoomserverDatabase.prefetch``):
    # the events naming them as prev events, and the redactions waiting for them.
    prefetched: set[str] = field(default_factory=set)
    children: dict[str, list[int]] = field(default_factory=dict)
    waiting_redactions: dict[str, list[int]] = field(default_factory=dict)
    # Rooms (NIDs) whose row in ``rooms`` is behind the record above.
    dirty_rooms: set[int] = field(default_factory=set)
    # Event rows read or written in this transaction (kept up to date by its
    # writes), and event IDs known not to be stored. Only this transaction
    # writes its room's events, so neither goes stale before it ends.
    records: dict[int, EventRecord] = field(default_factory=dict)
    record_nids: dict[str, int] = field(default_factory=dict)
    absent_ids: set[str] = field(default_factory=set)
    # Transaction keys read or written in this transaction, and the event
    # each produced (None: none yet). Only this transaction writes its
    # rooms' events, so none goes stale before it ends.
    transactions: dict[TransactionKey, str | None] = field(default_factory=dict)

    def learn_record(self, record: EventRecord) -> None:
        self.records[record.event_nid] = _clone(record)
        self.record_nids[record.event_id] = record.event_nid
        self.absent_ids.discard(record.event_id)


@dataclass
class Txn:
    """A connection inside one transaction and what it learnt so far.

    Writes that nothing in the transaction reads back through SQL are held
    here and written together (``flush``): a new event's JSON, prev and auth
    edges, a room row's changes, outbox rows. Every method that reads those
    tables flushes first, and so do ``savepoint`` and the commit."""

    conn: AsyncConnection
    local: TxnCache = field(default_factory=TxnCache)
    # Rooms (NIDs) this transaction wrote, and whether it redacted an event:
    # kept through a rolled-back savepoint (which forgets ``local``), so the
    # shared caches drop what the transaction may have changed.
    written_room_nids: set[int] = field(default_factory=set)
    redacted: bool = False
    # Rooms (NIDs) whose membership rows this transaction wrote: True while
    # it only made members join, False once it wrote anything else.
    membership_writes: dict[int, bool] = field(default_factory=dict)
    # For a read: how many membership commits this process had published
    # when it began (see ``RoomserverDatabase.server_joined``).
    membership_commits_seen: int = 0
    # A write transaction sees the last commit (SQLite: it holds the write
    # lock from its start; PostgreSQL: each statement sees the last commit),
    # so the rooms' rows kept in memory are never newer than what it reads.
    # A read's snapshot may be older than them: it reads the rows itself.
    writes: bool = False
    # Outbox rows to insert (in one statement) when the transaction commits.
    outbox: list[dict[str, Any]] = field(default_factory=list)
    # Rows of event_json, prev_events and auth_events not yet inserted.
    held_rows: dict[Table, list[dict[str, Any]]] = field(default_factory=dict)
    # On PostgreSQL (asyncpg) the batch's new events get NIDs reserved by
    # its first read; their rows (event, JSON, edges) are held here, by NID,
    # and written with the outbox and the rooms' rows in one statement (a
    # new event without a reserved NID is written at once, in one). Round
    # trips are what costs there; on SQLite a statement costs microseconds.
    postgres: bool = False
    reserved_nids: list[int] = field(default_factory=list)
    held_events: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Rows of roomserver_transactions not yet inserted.
    held_transactions: list[dict[str, Any]] = field(default_factory=list)

    def hold(self, table: Table, rows: Iterable[dict[str, Any]]) -> None:
        self.held_rows.setdefault(table, []).extend(rows)

    async def flush(self) -> None:
        """Writes what is held (but the outbox, written at the commit)."""
        if self.postgres:
            await self._write_held_postgres(with_outbox=False)
            return
        await self._flush_held()
        if self.held_transactions:
            held_transactions, self.held_transactions = self.held_transactions, []
            await _INSERT_TRANSACTIONS.execute_many(self.conn, held_transactions)
        dirty, self.local.dirty_rooms = self.local.dirty_rooms, set()
        for record in self.local.rooms.values():
            if record.room_nid in dirty:
                await _UPDATE_ROOM_PREBUILT.execute(self.conn, {
                    "k_room_nid": record.room_nid, "v_create_event_nid": record.create_event_nid,
                    "v_state_snapshot_nid": record.state_snapshot_nid,
                    "v_forward_extremities": json.dumps(sorted(record.forward_extremities)),
                    "v_last_sent_event_id": record.last_sent_event_id,
                    "v_last_stream_position": record.last_stream_position})

    async def _flush_held(self) -> None:
        held, self.held_rows = self.held_rows, {}
        for table, rows in held.items():
            for chunk in _chunks(rows):
                await _INSERT_HELD[table].execute_many(self.conn, chunk)

    async def write_last(self) -> None:
        """Before the commit: what is held, the outbox and the rooms' rows."""
        if not self.postgres:
            await self.flush()
            await _INSERT_OUTBOX.execute_many(self.conn, self.outbox)
            return
        await self._write_held_postgres(with_outbox=True)

    async def _write_held_postgres(self, *, with_outbox: bool) -> None:
        await self._flush_held()
        dirty, self.local.dirty_rooms = self.local.dirty_rooms, set()
        changed = [record for record in self.local.rooms.values() if record.room_nid in dirty]
        held, self.held_events = list(self.held_events.values()), {}
        held_transactions, self.held_transactions = self.held_transactions, []
        outbox = self.outbox if with_outbox else []
        if not changed and not outbox and not held and not held_transactions:
            return
        # The events' columns by their names; the other arrays' names differ.
        params: dict[str, Any] = {column: [row[column] for row in held]
                                  for column in ("event_nid", *NEW_EVENT_COLUMNS, "event_json")}
        params.update({
            "prev_event_nids": [row["event_nid"] for row in held for _ in row["prev_event_ids"]],
            "prev_event_ids": [p for row in held for p in row["prev_event_ids"]],
            "auth_event_nids": [row["event_nid"] for row in held for _ in row["auth_event_nids"]],
            "auth_nids": [a for row in held for a in row["auth_event_nids"]],
            "outbox_room_nids": [row["room_nid"] for row in outbox],
            "outbox_event_nids": [row["event_nid"] for row in outbox],
            "outbox_payloads": [row["payload"] for row in outbox],
            "room_nids": [r.room_nid for r in changed],
            "create_event_nids": [r.create_event_nid for r in changed],
            "state_snapshot_nids": [r.state_snapshot_nid for r in changed],
            "forward_extremities": [json.dumps(sorted(r.forward_extremities)) for r in changed],
            "last_sent_event_ids": [r.last_sent_event_id for r in changed],
            "last_stream_positions": [r.last_stream_position for r in changed]})
        params.update({f"txn_{column}s": [row[column] for row in held_transactions]
                       for column in (*KEY_COLUMNS, "event_id", "added_ms")})
        # The transaction's last statement: if it is also its only write (a
        # message's batch, the rooms' rows in memory), it runs alone, with
        # no BEGIN and no COMMIT (two round trips of the four).
        await _WRITE_HELD_PG.rows(self.conn, params, alone=with_outbox)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: on an exception its writes are undone and
        what the whole transaction learnt is forgotten (it may name them)."""
        await self.flush()
        outbox_before = len(self.outbox)
        try:
            async with self.conn.begin_nested():
                yield
                await self.flush()
        except BaseException:
            self.local = TxnCache()
            self.held_rows = {}
            self.held_events = {}
            self.held_transactions = []
            del self.outbox[outbox_before:]
            raise


@dataclass
class RoomRecord:
    room_nid: int
    room_id: str
    room_version: str
    create_event_nid: int | None
    state_snapshot_nid: int | None
    forward_extremities: list[int]
    last_sent_event_id: str
    last_stream_position: int


@dataclass
class EventRecord:
    event_nid: int
    event_id: str
    room_nid: int
    type_nid: int
    state_key_nid: int | None
    depth: int
    is_outlier: bool
    is_rejected: bool
    is_soft_failed: bool
    rejection_reason: str | None
    sent_to_output: bool
    state_before_nid: int | None
    state_after_nid: int | None
    stream_position: int | None
    redacted_by: str | None

    @property
    def is_accepted(self) -> bool:
        """Part of the room's timeline: not an outlier, rejected or soft-failed."""
        return not (self.is_outlier or self.is_rejected or self.is_soft_failed)


@dataclass
class NewOutlier:
    """An outlier to store in bulk (``insert_outliers``)."""

    event: Event
    type_nid: int
    state_key_nid: int | None
    # Its auth events, plus the create event in room version 12 (the
    # auth-chain index keeps it).
    auth_event_ids: list[str]
    rejection_reason: str | None


@dataclass
class MembershipRow:
    room_nid: int
    target_user_id: str
    membership: str
    event_nid: int


def _room_record(row: Any) -> RoomRecord:
    return RoomRecord(
        room_nid=row.room_nid, room_id=row.room_id, room_version=row.room_version,
        create_event_nid=row.create_event_nid, state_snapshot_nid=row.state_snapshot_nid,
        forward_extremities=[int(n) for n in json.loads(row.forward_extremities)],
        last_sent_event_id=row.last_sent_event_id, last_stream_position=row.last_stream_position,
    )


def _room_record_of_tuple(row: Sequence[Any]) -> RoomRecord:
    """A row of ``select(rooms)`` as a plain tuple (the table's column order)."""
    (room_nid, room_id, room_version, create_event_nid, state_snapshot_nid, forward_extremities,
     last_sent_event_id, last_stream_position) = row
    return RoomRecord(
        room_nid=room_nid, room_id=room_id, room_version=room_version, create_event_nid=create_event_nid,
        state_snapshot_nid=state_snapshot_nid, forward_extremities=[int(n) for n in json.loads(forward_extremities)],
        last_sent_event_id=last_sent_event_id, last_stream_position=last_stream_position,
    )


def _clone(record: _R) -> _R:
    """A shallow copy of a record (several per event: ``dataclasses.replace``
    was a visible share of the input's time)."""
    copied = object.__new__(type(record))
    copied.__dict__.update(record.__dict__)
    return copied


def _copy_room(record: RoomRecord) -> RoomRecord:
    copied = _clone(record)
    copied.forward_extremities = list(record.forward_extremities)
    return copied


def _event_record_of_tuple(row: Sequence[Any]) -> EventRecord:
    """A row of ``select(events)`` as a plain tuple (the table's column order)."""
    (event_nid, event_id, room_nid, type_nid, state_key_nid, depth, is_outlier, is_rejected, is_soft_failed,
     rejection_reason, sent_to_output, state_before_nid, state_after_nid, stream_position, redacted_by) = row
    return EventRecord(
        event_nid=event_nid, event_id=event_id, room_nid=room_nid, type_nid=type_nid,
        state_key_nid=state_key_nid, depth=depth, is_outlier=bool(is_outlier), is_rejected=bool(is_rejected),
        is_soft_failed=bool(is_soft_failed), rejection_reason=rejection_reason,
        sent_to_output=bool(sent_to_output), state_before_nid=state_before_nid,
        state_after_nid=state_after_nid, stream_position=stream_position, redacted_by=redacted_by,
    )


def _event_record(row: Any) -> EventRecord:
    return EventRecord(
        event_nid=row.event_nid, event_id=row.event_id, room_nid=row.room_nid, type_nid=row.type_nid,
        state_key_nid=row.state_key_nid, depth=row.depth, is_outlier=bool(row.is_outlier),
        is_rejected=bool(row.is_rejected), is_soft_failed=bool(row.is_soft_failed),
        rejection_reason=row.rejection_reason, sent_to_output=bool(row.sent_to_output),
        state_before_nid=row.state_before_nid, state_after_nid=row.state_after_nid,
        stream_position=row.stream_position, redacted_by=row.redacted_by,
    )


class RoomserverDatabase:
    def __init__(self, db: Database, *, sole_writer: bool = False) -> None:
        self.db = db
        self.sole_writer = sole_writer
        self._postgres = db.dialect_name == "postgresql"
        # Moves whenever ``sole_writer`` changes: a read that began before
        # does not fill the room cache.
        self._sole_epoch = 0
        # Sole writer only: room rows as last committed, by room ID.
        self._rooms: LRUCache[str, RoomRecord] = LRUCache(ROOM_CACHE_SIZE)
        # Sole writer only: room NID -> server name -> whether a user of it is
        # joined, as last committed; and a count of the commits that wrote
        # memberships (a read that overlapped one keeps nothing).
        self._servers_joined: LRUCache[int, dict[str, bool]] = LRUCache(SERVER_JOINED_CACHE_SIZE)
        self._membership_commits = 0
        self._room_id_of_nid: LRUCache[int, str] = LRUCache(ROOM_CACHE_SIZE)
        # Event NID -> (event ID, depth), which never change once committed.
        self._event_heads: LRUCache[int, tuple[str, int]] = LRUCache(EVENT_HEAD_CACHE_SIZE)
        # Moves when a write transaction of this process that redacted an event ends.
        self._redaction_generation = 0
        self._type_nids: dict[str, int] = {}
        self._type_names: dict[int, str] = {}
        self._state_key_nids: LRUCache[str, int] = LRUCache(200_000)
        self._state_key_names: LRUCache[int, str] = LRUCache(200_000)
        self._events: LRUCache[int, Event] = LRUCache(EVENT_CACHE_SIZE)
        self._snapshots: LRUCache[int, StateMap] = LRUCache(
            SNAPSHOT_CACHE_SIZE, max_weight=SNAPSHOT_CACHE_ENTRIES, weigh=lambda state: len(state) + 1)
        self._room_versions: dict[int, str] = {}
        # Snapshot NID -> delta depth: the next state change's delta is
        # written against the last snapshot without reading its row.
        self._snapshot_depths: LRUCache[int, int] = LRUCache(SNAPSHOT_DEPTH_CACHE_SIZE)

    async def close(self) -> None:
        await self.db.close()

    def become_sole_writer(self) -> None:
        """This instance is now its database's only writer (see
        ``writer_registration.py``): rooms' rows may be kept from here on."""
        self._forget_rooms()
        self.sole_writer = True

    def stop_sole_writing(self) -> None:
        """Another instance may write from now on: nothing kept about rooms'
        rows is trusted or kept again."""
        self.sole_writer = False
        self._forget_rooms()

    def _forget_rooms(self) -> None:
        self._sole_epoch += 1
        self._rooms.clear()
        self._room_id_of_nid.clear()
        self._servers_joined.clear()

    # -- transactions --------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Txn]:
        """A write transaction; committed when the block ends without an error."""
        txn: Txn | None = None
        try:
            async with self.db.transaction() as conn:
                txn = Txn(conn, writes=True, postgres=self._postgres)
                yield txn
                await txn.write_last()
        except BaseException:
            # Maybe committed after all (an error past the commit): forget.
            if txn is not None:
                self._drop_rooms(txn.written_room_nids)
                self._note_membership_writes({room_nid: False for room_nid in txn.membership_writes})
                if txn.redacted:
                    self._redaction_generation += 1
            raise
        self._publish(txn.local)
        self._publish_writes(txn)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Txn]:
        """A read-only transaction (one consistent snapshot; on PostgreSQL,
        whose READ COMMITTED gives each statement its own snapshot anyway,
        statements outside a transaction: see ``Database.connect``)."""
        generation = self.db.write_generation
        epoch = self._sole_epoch
        async with self.db.connect(autocommit=True) as conn:
            txn = Txn(conn, postgres=self._postgres, membership_commits_seen=self._membership_commits)
            yield txn
        self._publish(txn.local)
        if self.sole_writer and self.db.write_generation == generation and self._sole_epoch == epoch:
            # No write of this process overlapped the read: the rows it read
            # are the rooms' last committed ones.
            for record in txn.local.rooms.values():
                self._cache_room(record)

    def _publish_writes(self, txn: Txn) -> None:
        """A write transaction committed: the shared room rows become the
        ones it wrote (those it only read are left alone: on PostgreSQL a
        concurrent transaction may have changed them)."""
        self._drop_rooms(txn.written_room_nids)
        if self.sole_writer:
            for record in txn.local.rooms.values():
                if record.room_nid in txn.written_room_nids:
                    self._cache_room(record)
        if txn.redacted:
            self._redaction_generation += 1
        self._note_membership_writes(txn.membership_writes)

    def _note_membership_writes(self, writes: Mapping[int, bool]) -> None:
        """Committed (or maybe committed) membership writes: a room's
        remembered "no user of that server is joined" may be wrong after a
        join, and any answer after anything else."""
        if not writes:
            return
        self._membership_commits += 1
        for room_nid, joins_only in writes.items():
            known = self._servers_joined.get(room_nid)
            if known is None:
                continue
            if joins_only:
                for server_name in [s for s, joined in known.items() if not joined]:
                    del known[server_name]
            else:
                self._servers_joined.discard(room_nid)

    async def server_joined(self, room: RoomRecord, server_name: str, txn: Txn | None = None) -> bool:
        """Whether a user of ``server_name`` is joined to the room; never in
        a room without current state (a stub: a join there goes through
        another server). Read in ``txn`` when given. A sole writer keeps the
        answers in memory, kept up to date by its commits: every local join
        in a room asks it."""
        if room.state_snapshot_nid is None:
            return False
        if self.sole_writer:
            known = self._servers_joined.get(room.room_nid)
            if known is not None and server_name in known:
                return known[server_name]
        # As of before the read's snapshot: a commit published since means the
        # answer may be older than what is committed, and is not kept.
        commits = txn.membership_commits_seen if txn is not None else self._membership_commits
        epoch = self._sole_epoch
        if txn is not None:
            joined = await membership_t.select_server_joined(txn.conn, room.room_nid, server_name)
        else:
            async with self.reading() as reading:
                joined = await membership_t.select_server_joined(reading.conn, room.room_nid, server_name)
        if self.sole_writer and self._membership_commits == commits and self._sole_epoch == epoch:
            known = self._servers_joined.get(room.room_nid)
            if known is None:
                known = {}
                self._servers_joined.put(room.room_nid, known)
            known[server_name] = joined
        return joined

    def _cache_room(self, record: RoomRecord) -> None:
        self._rooms.put(record.room_id, _copy_room(record))
        self._room_id_of_nid.put(record.room_nid, record.room_id)

    def _drop_rooms(self, room_nids: Iterable[int]) -> None:
        for room_nid in room_nids:
            room_id = self._room_id_of_nid.get(room_nid)
            if room_id is not None:
                self._rooms.discard(room_id)

    def cached_room(self, room_id: str) -> RoomRecord | None:
        """The room's row as last committed, from memory; None when not
        known (always, unless this room server is its database's only writer)."""
        known = self._rooms.get(room_id) if self.sole_writer else None
        return _copy_room(known) if known is not None else None

    def cached_event_head(self, event_nid: int) -> tuple[str, int] | None:
        """The (event ID, depth) of a committed event, from memory, if there."""
        return self._event_heads.get(event_nid)

    @property
    def redaction_generation(self) -> int:
        """Moves when a write transaction that redacted an event ends: what a
        cache holds about events' redactions is valid while it stays the same
        (in this process: see ``sole_writer``)."""
        return self._redaction_generation

    def _publish(self, local: TxnCache) -> None:
        for event_nid, record in local.records.items():
            self._event_heads.put(event_nid, (record.event_id, record.depth))
        for event_nid, event in local.events.items():
            self._events.put(event_nid, event)
        for snapshot_nid, state in local.snapshots.items():
            self._snapshots.put(snapshot_nid, state)
        for snapshot_nid, depth in local.snapshot_depths.items():
            self._snapshot_depths.put(snapshot_nid, depth)
        self._room_versions.update(local.room_versions)
        for name, nid in local.type_nids.items():
            self._remember_type(name, nid)
        for name, nid in local.state_key_nids.items():
            self._remember_state_key(name, nid)

    # -- rooms ---------------------------------------------------------------

    async def room_by_id(self, txn: Txn, room_id: str) -> RoomRecord | None:
        known = txn.local.rooms.get(room_id)
        if known is not None:
            return _copy_room(known)
        committed = self.cached_room(room_id) if txn.writes else None
        # Not if this transaction wrote the room and then forgot what it
        # wrote (a rolled-back savepoint): the row is newer than the cache.
        if committed is not None and committed.room_nid not in txn.written_room_nids:
            txn.local.rooms[room_id] = _copy_room(committed)
            return committed
        found = await _ROOM_BY_ID_PREBUILT.rows(txn.conn, {"room_id": room_id})
        if not found:
            return None
        record = _room_record_of_tuple(found[0])
        txn.local.rooms[record.room_id] = _copy_room(record)
        return record

    async def room_by_nid(self, txn: Txn, room_nid: int) -> RoomRecord | None:
        for known in txn.local.rooms.values():
            if known.room_nid == room_nid:
                return _copy_room(known)
        row = (await txn.conn.execute(select(rooms).where(rooms.c.room_nid == room_nid))).first()
        return self._learn_room(txn, row)

    @staticmethod
    def _learn_room(txn: Txn, row: Any) -> RoomRecord | None:
        if row is None:
            return None
        record = _room_record(row)
        txn.local.rooms[record.room_id] = _copy_room(record)
        return record

    async def room_ids_by_nid(self, txn: Txn, room_nids: Collection[int]) -> dict[int, str]:
        result: dict[int, str] = {}
        for chunk in _chunks(room_nids):
            rows = await txn.conn.execute(
                select(rooms.c.room_nid, rooms.c.room_id).where(rooms.c.room_nid.in_(chunk)))
            result.update({row.room_nid: row.room_id for row in rows})
        return result

    async def create_room(self, txn: Txn, room_id: str, room_version: str) -> int:
        nid = await txn.conn.scalar(
            rooms.insert().values(room_id=room_id, room_version=room_version, forward_extremities="[]",
                                  last_sent_event_id="", last_stream_position=0)
            .returning(rooms.c.room_nid))
        assert nid is not None
        txn.written_room_nids.add(int(nid))
        return int(nid)

    async def update_room(self, txn: Txn, room_nid: int, *, create_event_nid: int | None = None,
                          state_snapshot_nid: int | None = None,
                          forward_extremities: list[int] | None = None,
                          last_sent_event_id: str | None = None,
                          last_stream_position: int | None = None) -> None:
        values: dict[str, Any] = {}
        if create_event_nid is not None:
            values["create_event_nid"] = create_event_nid
        if state_snapshot_nid is not None:
            values["state_snapshot_nid"] = state_snapshot_nid
        if forward_extremities is not None:
            values["forward_extremities"] = json.dumps(sorted(forward_extremities))
        if last_sent_event_id is not None:
            values["last_sent_event_id"] = last_sent_event_id
        if last_stream_position is not None:
            values["last_stream_position"] = last_stream_position
        if not values:
            return
        txn.written_room_nids.add(room_nid)
        cached = [known for known in txn.local.rooms.values() if known.room_nid == room_nid]
        if not cached:
            await txn.conn.execute(update(rooms).where(rooms.c.room_nid == room_nid).values(**values))
            return
        # Written by ``Txn.flush``.
        txn.local.dirty_rooms.add(room_nid)
        for known in cached:
            if create_event_nid is not None:
                known.create_event_nid = create_event_nid
            if state_snapshot_nid is not None:
                known.state_snapshot_nid = state_snapshot_nid
            if forward_extremities is not None:
                known.forward_extremities = sorted(forward_extremities)
            if last_sent_event_id is not None:
                known.last_sent_event_id = last_sent_event_id
            if last_stream_position is not None:
                known.last_stream_position = last_stream_position

    async def room_version_of(self, txn: Txn, room_nid: int) -> str:
        version = self._room_versions.get(room_nid) or txn.local.room_versions.get(room_nid)
        if version is None:
            version = await txn.conn.scalar(select(rooms.c.room_version).where(rooms.c.room_nid == room_nid))
            if version is None:
                raise KeyError(f"no room with NID {room_nid}")
            txn.local.room_versions[room_nid] = version
        return version

    # -- interned names ------------------------------------------------------

    async def type_nids(self, txn: Txn, names: Iterable[str], *, create: bool) -> dict[str, int]:
        """NIDs of event types; with ``create``, unknown ones are interned."""
        return await self._intern(txn, names, create, event_types, "event_type", "type_nid",
                                  self._type_nids.get, txn.local.type_nids)

    async def state_key_nids(self, txn: Txn, names: Iterable[str], *, create: bool) -> dict[str, int]:
        return await self._intern(txn, names, create, event_state_keys, "state_key", "state_key_nid",
                                  self._state_key_nids.get, txn.local.state_key_nids)

    def _remember_type(self, name: str, nid: int) -> None:
        self._type_nids[name] = nid
        self._type_names[nid] = name

    def _remember_state_key(self, name: str, nid: int) -> None:
        self._state_key_nids.put(name, nid)
        self._state_key_names.put(nid, name)

    async def _intern(self, txn: Txn, names: Iterable[str], create: bool, table: Any, name_col: str,
                      nid_col: str, cached: Callable[[str], int | None],
                      learnt: dict[str, int]) -> dict[str, int]:
        result: dict[str, int] = {}
        missing: set[str] = set()
        for name in names:
            nid = cached(name)
            if nid is None:
                nid = learnt.get(name)
            if nid is None:
                missing.add(name)
            else:
                result[name] = nid
        if not missing:
            return result
        found: dict[str, int] = {}
        if create and txn.postgres:
            for chunk in _chunks(sorted(missing)):
                found.update({name: int(nid) for name, nid in await _INTERN_PG[table].rows(txn.conn, {"names": chunk})})
            # Committed by another transaction while the insert waited: read now.
            missing -= found.keys()
        elif create:
            for chunk in _chunks(sorted(missing)):
                await txn.conn.execute(
                    self.db.insert_or_ignore(table, [{name_col: n} for n in chunk], [name_col]))
        for chunk in _chunks(missing):
            found.update({name: int(nid) for name, nid in await _NAMES_PREBUILT[table].rows(
                txn.conn, {"names": chunk})})
        result.update(found)
        learnt.update(found)
        return result

    async def type_names(self, txn: Txn, nids: Iterable[int]) -> dict[int, str]:
        return await self._names(txn, nids, event_types, "event_type", "type_nid",
                                 self._type_names.get, txn.local.type_nids)

    async def state_key_names(self, txn: Txn, nids: Iterable[int]) -> dict[int, str]:
        return await self._names(txn, nids, event_state_keys, "state_key", "state_key_nid",
                                 self._state_key_names.get, txn.local.state_key_nids)

    async def _names(self, txn: Txn, nids: Iterable[int], table: Any, name_col: str, nid_col: str,
                     cached: Callable[[int], str | None], learnt: dict[str, int]) -> dict[int, str]:
        result: dict[int, str] = {}
        missing: set[int] = set()
        for nid in nids:
            name = cached(nid)
            if name is None:
                missing.add(nid)
            else:
                result[nid] = name
        found: dict[int, str] = {}
        for chunk in _chunks(missing):
            rows = await txn.conn.execute(
                select(table.c[name_col], table.c[nid_col]).where(table.c[nid_col].in_(chunk)))
            found.update({int(row[1]): row[0] for row in rows})
        result.update(found)
        learnt.update({name: nid for nid, name in found.items()})
        return result

    async def state_keys_of(self, txn: Txn, state: Mapping[tuple[int, int], int]
                            ) -> dict[tuple[int, int], tuple[str, str]]:
        """The (type, state_key) names of a state map's keys."""
        types = await self.type_names(txn, {t for t, _ in state})
        keys = await self.state_key_names(txn, {s for _, s in state})
        return {(t, s): (types[t], keys[s]) for t, s in state}

    async def state_tuple_nids(self, txn: Txn, tuples: Iterable[tuple[str, str]], *,
                               create_types: bool = False) -> dict[tuple[str, str], tuple[int, int]]:
        """NIDs of known (type, state_key) pairs; unknown names are left out.
        ``create_types`` interns unknown types (a write transaction that asks
        for a type again and again should not look it up every time)."""
        as_list = list(tuples)
        types = await self.type_nids(txn, {t for t, _ in as_list}, create=create_types)
        keys = await self.state_key_nids(txn, {s for _, s in as_list}, create=False)
        return {(t, s): (types[t], keys[s]) for t, s in as_list if t in types and s in keys}

    # -- events --------------------------------------------------------------

    async def event_records_by_id(self, txn: Txn, event_ids: Collection[str]) -> dict[str, EventRecord]:
        local = txn.local
        result: dict[str, EventRecord] = {}
        missing: list[str] = []
        for event_id in event_ids:
            nid = local.record_nids.get(event_id)
            if nid is not None:
                result[event_id] = _clone(local.records[nid])
            elif event_id not in local.absent_ids:
                missing.append(event_id)
        for chunk in _chunks(missing):
            for row in await _EVENTS_BY_ID_PREBUILT.rows(txn.conn, {"ids": chunk}):
                record = _event_record_of_tuple(row)
                local.learn_record(record)
                result[record.event_id] = record
        return result

    async def event_records_by_nid(self, txn: Txn, event_nids: Collection[int]) -> dict[int, EventRecord]:
        local = txn.local
        result: dict[int, EventRecord] = {}
        missing: list[int] = []
        for nid in event_nids:
            cached = local.records.get(nid)
            if cached is not None:
                result[nid] = _clone(cached)
            else:
                missing.append(nid)
        for chunk in _chunks(missing):
            for row in await _EVENTS_BY_NID_PREBUILT.rows(txn.conn, {"nids": chunk}):
                record = _event_record_of_tuple(row)
                local.learn_record(record)
                result[record.event_nid] = record
        return result

    async def events_by_nid(self, txn: Txn, event_nids: Collection[int]) -> dict[int, Event]:
        """Parsed events (as received, unredacted), from the cache where possible."""
        result: dict[int, Event] = {}
        missing: list[int] = []
        for nid in event_nids:
            cached = self._events.get(nid) or txn.local.events.get(nid)
            if cached is None:
                missing.append(nid)
            else:
                result[nid] = cached
        if missing:
            await txn.flush()
        for chunk in _chunks(missing):
            for event_nid, pdu_json, event_id, room_version in await _EVENT_JSON_BY_NID.rows(
                    txn.conn, {"nids": chunk}):
                event = Event.from_json(bytes(pdu_json), get_room_version(room_version), event_id)
                txn.local.events[event_nid] = event
                result[event_nid] = event
        return result

    async def insert_event(self, txn: Txn, event: Event, *, room_nid: int, type_nid: int,
                           state_key_nid: int | None, auth_event_nids: Collection[int],
                           is_outlier: bool, is_rejected: bool, is_soft_failed: bool,
                           rejection_reason: str | None, state_before_nid: int | None,
                           state_after_nid: int | None, sent_to_output: bool = False,
                           stream_position: int | None = None) -> int:
        """Stores a new event; ``sent_to_output`` when it will have no output."""
        row = {
            "event_id": event.event_id, "room_nid": room_nid, "type_nid": type_nid, "state_key_nid": state_key_nid,
            "depth": event.depth, "is_outlier": is_outlier, "is_rejected": is_rejected,
            "is_soft_failed": is_soft_failed, "rejection_reason": rejection_reason, "sent_to_output": sent_to_output,
            "state_before_nid": state_before_nid, "state_after_nid": state_after_nid,
            "stream_position": stream_position}
        prevs = list(dict.fromkeys(event.prev_event_ids))
        if txn.postgres:
            row.update(event_json=event.to_json(), prev_event_ids=prevs, auth_event_nids=sorted(set(auth_event_nids)))
            if txn.reserved_nids:
                # Written with the rest at the end (``Txn.write_last``), or
                # by the flush before anything reads these tables.
                nid = row["event_nid"] = txn.reserved_nids.pop()
                txn.held_events[nid] = row
            else:
                nid = await _INSERT_EVENT_WITH_EDGES_PG.scalar(txn.conn, row)
        else:
            nid = await _INSERT_NEW_EVENT.scalar(txn.conn, row)
        assert nid is not None
        event_nid = int(nid)
        txn.local.learn_record(EventRecord(
            event_nid=event_nid, event_id=event.event_id, room_nid=room_nid, type_nid=type_nid,
            state_key_nid=state_key_nid, depth=event.depth, is_outlier=is_outlier, is_rejected=is_rejected,
            is_soft_failed=is_soft_failed, rejection_reason=rejection_reason, sent_to_output=sent_to_output,
            state_before_nid=state_before_nid, state_after_nid=state_after_nid, stream_position=stream_position,
            redacted_by=None))
        # The parsed event serves events_by_nid; on SQLite the rows below are
        # held until something reads these tables (see Txn).
        txn.local.events[event_nid] = event
        if prevs:
            self._note_children(txn, event_nid, prevs)
        if txn.postgres:
            return event_nid
        txn.hold(event_json, [{"event_nid": event_nid, "event_json": event.to_json()}])
        if prevs:
            txn.hold(prev_events, [{"event_nid": event_nid, "prev_event_id": p} for p in prevs])
        if auth_event_nids:
            txn.hold(auth_events, [{"event_nid": event_nid, "auth_event_nid": a} for a in set(auth_event_nids)])
        return event_nid

    async def insert_outliers(self, txn: Txn, room_nid: int, outliers: Sequence[NewOutlier],
                              known_nids: Mapping[str, int]) -> dict[str, int]:
        """Stores many outliers with a handful of statements; answers their
        NIDs by event ID. Auth events must be in ``known_nids`` or among
        ``outliers``."""
        await txn.flush()
        nids: dict[str, int] = {}
        for chunk in _chunks(outliers, 200):
            rows = await txn.conn.execute(events.insert().returning(events.c.event_id, events.c.event_nid), [{
                "event_id": o.event.event_id, "room_nid": room_nid, "type_nid": o.type_nid,
                "state_key_nid": o.state_key_nid, "depth": o.event.depth, "is_outlier": True,
                "is_rejected": o.rejection_reason is not None, "is_soft_failed": False,
                "rejection_reason": o.rejection_reason, "sent_to_output": True, "state_before_nid": None,
                "state_after_nid": None} for o in chunk])
            nids.update({row.event_id: int(row.event_nid) for row in rows})
        # Not cached as records (read back when asked for), no longer absent.
        txn.local.absent_ids.difference_update(nids)
        every = {**known_nids, **nids}
        json_rows = [{"event_nid": nids[o.event.event_id], "event_json": o.event.to_json()} for o in outliers]
        prev_rows = [{"event_nid": nids[o.event.event_id], "prev_event_id": p}
                     for o in outliers for p in dict.fromkeys(o.event.prev_event_ids)]
        auth_rows = [{"event_nid": nids[o.event.event_id], "auth_event_nid": a}
                     for o in outliers
                     for a in {every[i] for i in o.auth_event_ids if i in every}]
        for table, rows_of in ((event_json, json_rows), (prev_events, prev_rows), (auth_events, auth_rows)):
            for chunk in _chunks(rows_of):
                await txn.conn.execute(table.insert(), chunk)
        for o in outliers:
            self._note_children(txn, nids[o.event.event_id], dict.fromkeys(o.event.prev_event_ids))
            # Kept parsed (in the bounded event cache once committed): a join's
            # state comes in as outliers and is read back right after, whole.
            txn.local.events[nids[o.event.event_id]] = o.event
        return nids

    async def update_event(self, txn: Txn, event_nid: int, **values: Any) -> None:
        if "redacted_by" in values:
            txn.redacted = True
        held = txn.held_events.get(event_nid)
        if held is not None and values.keys() <= _HELD_EVENT_COLUMNS:
            # Not written yet: written as it now is.
            held.update(values)
        else:
            if held is not None:
                await txn.flush()
            columns = tuple(sorted(values))
            await _update_event_statement(columns).execute(
                txn.conn, {"k_event_nid": event_nid, **{f"v_{name}": values[name] for name in columns}})
        cached = txn.local.records.get(event_nid)
        if cached is not None:
            for name, value in values.items():
                setattr(cached, name, value)

    async def auth_chain_nids(self, txn: Txn, event_nids: Collection[int]) -> set[int]:
        if not event_nids:
            return set()
        await txn.flush()
        result: set[int] = set()
        for chunk in _chunks(event_nids):
            rows = await txn.conn.execute(auth_chain_query(chunk))
            result.update(int(row[0]) for row in rows)
        return result

    async def prefetch(self, txn: Txn, event_ids: Collection[str], related_ids: Collection[str] = (),
                       room_ids: Collection[str] = (), transaction_keys: Collection[TransactionKey] = ()
                       ) -> None:
        """Reads, for a batch of input about to be processed, what each event
        will ask about itself (``children_of``, ``pending_redactions_of``) in
        two statements for all; kept up to date by this transaction's writes.
        The rows of ``event_ids`` and of ``related_ids`` (the events they name
        as auth and prev events) are read in one more statement, so checking
        each event reads nothing more. On PostgreSQL, one statement reads all
        that and the rows of the rooms ``room_ids`` (what ``room_by_id`` then
        answers in this transaction) and the events the transactions
        ``transaction_keys`` produced (what ``transaction_event`` answers)."""
        wanted = set(event_ids) - txn.local.prefetched
        if not wanted:
            return
        await txn.flush()
        children: dict[str, list[int]] = {e: [] for e in wanted}
        waiting: dict[str, list[int]] = {e: [] for e in wanted}
        if txn.postgres:
            await self._prefetch_postgres(txn, wanted, related_ids, room_ids, transaction_keys, children, waiting)
            return
        for chunk in _chunks(wanted):
            for named, by, kind in await _NAMED_BY_PREBUILT.rows(txn.conn, {"ids": chunk}):
                (children if kind == 0 else waiting)[named].append(int(by))
        txn.local.children.update(children)
        txn.local.waiting_redactions.update(waiting)
        txn.local.prefetched |= wanted
        found = await self.event_records_by_id(txn, wanted | set(related_ids))
        txn.local.absent_ids |= wanted - found.keys()

    async def _prefetch_postgres(self, txn: Txn, wanted: set[str], related_ids: Collection[str],
                                 room_ids: Collection[str], transaction_keys: Collection[TransactionKey],
                                 children: dict[str, list[int]], waiting: dict[str, list[int]]) -> None:
        local = txn.local
        keys_wanted = [key for key in transaction_keys if key not in local.transactions]
        records_wanted = [e for e in wanted | set(related_ids)
                          if e not in local.record_nids and e not in local.absent_ids]
        rooms_wanted = [r for r in room_ids if r not in local.rooms]
        # Before the transaction begins if it is the first statement (it
        # reads nothing a later statement must see in the same snapshot).
        found = await _PREFETCH_PG.rows(txn.conn, {
            "named_ids": list(wanted), "event_ids": records_wanted, "room_ids": rooms_wanted,
            "nid_count": len(wanted),
            **{f"txn_{column}s": [key[i] for key in keys_wanted] for i, column in enumerate(KEY_COLUMNS)}},
            alone=True)
        named_rows, event_rows, room_rows, reserved, transaction_rows = found[0]
        local.transactions.update(dict.fromkeys(keys_wanted))
        for *key, event_id in transaction_rows:
            local.transactions[(key[0], key[1], key[2], key[3], key[4])] = event_id
        # Popped from the end: the first event gets the lowest.
        txn.reserved_nids[:0] = sorted(reserved, reverse=True)
        for named, by, kind in named_rows:
            (children if kind == 0 else waiting)[named].append(int(by))
        local.children.update(children)
        local.waiting_redactions.update(waiting)
        local.prefetched |= wanted
        for row in event_rows:
            local.learn_record(_event_record_of_tuple(row))
        for row in room_rows:
            record = _room_record_of_tuple(row)
            local.rooms[record.room_id] = _copy_room(record)
        local.absent_ids |= {e for e in wanted if e not in local.record_nids}

    async def transaction_event(self, txn: Txn, key: TransactionKey) -> str | None:
        """The event the transaction ``key`` produced, if any (read once per
        write transaction; ``prefetch`` reads the batch's keys together on
        PostgreSQL)."""
        if key in txn.local.transactions:
            # Read already, or written by this transaction (its held rows
            # need no flush: ``record_transaction`` noted them here).
            return txn.local.transactions[key]
        rows = await _TRANSACTION_OF.rows(txn.conn, dict(zip(KEY_COLUMNS, key, strict=True)))
        event_id: str | None = rows[0][0] if rows else None
        txn.local.transactions[key] = event_id
        return event_id

    def record_transaction(self, txn: Txn, key: TransactionKey, event_id: str) -> None:
        """Records that the transaction ``key`` produced ``event_id`` (an
        accepted event of this transaction), written with the event."""
        txn.local.transactions[key] = event_id
        txn.held_transactions.append({**dict(zip(KEY_COLUMNS, key, strict=True)), "event_id": event_id,
                                      "added_ms": int(time.time() * 1000)})

    async def forget_old_transactions(self, before_ms: int) -> int:
        """Deletes the transactions recorded before ``before_ms``; answers how many."""
        async with self.db.transaction() as conn:
            result = await conn.execute(delete(transactions).where(transactions.c.added_ms < before_ms))
        return int(result.rowcount or 0)

    def _note_children(self, txn: Txn, event_nid: int, prev_event_ids: Iterable[str]) -> None:
        for prev in prev_event_ids:
            if prev in txn.local.prefetched:
                txn.local.children[prev].append(event_nid)

    async def children_of(self, txn: Txn, event_ids: Collection[str]) -> dict[str, list[int]]:
        """Events (NIDs) that name each of ``event_ids`` among their prev events."""
        result: dict[str, list[int]] = {}
        for event_id in event_ids:
            if event_id in txn.local.prefetched and txn.local.children[event_id]:
                result[event_id] = list(txn.local.children[event_id])
        unknown = [e for e in event_ids if e not in txn.local.prefetched]
        if unknown:
            await txn.flush()
        for chunk in _chunks(unknown):
            rows = await txn.conn.execute(
                select(prev_events.c.prev_event_id, prev_events.c.event_nid)
                .where(prev_events.c.prev_event_id.in_(chunk)))
            for row in rows:
                result.setdefault(row.prev_event_id, []).append(int(row.event_nid))
        return result

    async def member_events_after(self, txn: Txn, room_nid: int, user_id: str, stream_position: int) -> list[int]:
        """The user's accepted member events later in the room's stream."""
        types = await self.type_nids(txn, ["m.room.member"], create=False)
        keys = await self.state_key_nids(txn, [user_id], create=False)
        if "m.room.member" not in types or user_id not in keys:
            return []
        rows = await txn.conn.execute(select(events.c.event_nid).where(
            events.c.room_nid == room_nid, events.c.type_nid == types["m.room.member"],
            events.c.state_key_nid == keys[user_id], events.c.stream_position > stream_position,
            events.c.is_rejected.is_(False), events.c.is_soft_failed.is_(False),
            events.c.is_outlier.is_(False)))
        return [int(row[0]) for row in rows]

    # -- state snapshots -----------------------------------------------------

    async def load_state(self, txn: Txn, snapshot_nid: int | None) -> StateMap:
        """The state a snapshot holds. The result is shared: copy before changing it."""
        if snapshot_nid is None:
            return {}
        cached = self._cached_snapshot(txn, snapshot_nid)
        if cached is not None:
            return cached
        # The chain up to the full base, in one query, cut at a cached ancestor.
        chain: list[int] = []
        base: StateMap | None = None
        for nid in await self._snapshot_chain(txn, snapshot_nid):
            cached = self._cached_snapshot(txn, nid)
            if cached is not None:
                base = cached
                break
            chain.append(nid)
        state: StateMap = dict(base) if base is not None else {}
        entries: dict[int, list[tuple[int, int, int | None]]] = {n: [] for n in chain}
        for chunk in _chunks(chain):
            rows = await txn.conn.execute(
                select(state_entries.c.snapshot_nid, state_entries.c.type_nid,
                       state_entries.c.state_key_nid, state_entries.c.event_nid)
                .where(state_entries.c.snapshot_nid.in_(chunk)))
            for entry in rows:
                entries[entry.snapshot_nid].append((entry.type_nid, entry.state_key_nid, entry.event_nid))
        for nid in reversed(chain):
            for type_nid, sk_nid, event_nid in entries[nid]:
                if event_nid is None:
                    state.pop((type_nid, sk_nid), None)
                else:
                    state[(type_nid, sk_nid)] = event_nid
        txn.local.snapshots[snapshot_nid] = state
        return state

    async def _snapshot_chain(self, txn: Txn, snapshot_nid: int) -> list[int]:
        """``snapshot_nid``, its parent, and so on up to its full base."""
        start = (select(state_snapshots.c.snapshot_nid.label("nid"), state_snapshots.c.parent_nid.label("parent"),
                        state_snapshots.c.delta_depth.label("depth"))
                 .where(state_snapshots.c.snapshot_nid == snapshot_nid)
                 .cte("snapshot_chain", recursive=True))
        step = (select(state_snapshots.c.snapshot_nid, state_snapshots.c.parent_nid, state_snapshots.c.delta_depth)
                .join(start, state_snapshots.c.snapshot_nid == start.c.parent)
                .where(start.c.depth > 0))
        chain = start.union_all(step)
        rows = (await txn.conn.execute(select(chain.c.nid, chain.c.depth))).all()
        if not rows:
            raise KeyError(f"no state snapshot {snapshot_nid}")
        # Deepest first: the starting snapshot has the greatest delta depth.
        return [int(row.nid) for row in sorted(rows, key=lambda row: -int(row.depth))]

    def _cached_snapshot(self, txn: Txn, snapshot_nid: int) -> StateMap | None:
        cached = self._snapshots.get(snapshot_nid)
        return cached if cached is not None else txn.local.snapshots.get(snapshot_nid)

    async def save_state(self, txn: Txn, room_nid: int, state: StateMap, parent_nid: int | None) -> int:
        """A snapshot holding ``state``: ``parent_nid`` itself when nothing
        changed, else a delta against it (or a new full base)."""
        if parent_nid is not None:
            parent = await self.load_state(txn, parent_nid)
            if parent == state:
                return parent_nid
            parent_depth = self._snapshot_depths.get(parent_nid)
            if parent_depth is None:
                parent_depth = txn.local.snapshot_depths.get(parent_nid)
            if parent_depth is None:
                parent_depth = int(await txn.conn.scalar(
                    select(state_snapshots.c.delta_depth).where(state_snapshots.c.snapshot_nid == parent_nid)) or 0)
            # Set operations on the maps' items (event NIDs are never None):
            # a big room's state is compared at C speed, not entry by entry.
            delta: list[tuple[int, int, int | None]] = [(t, s, e) for (t, s), e in state.items() - parent.items()]
            delta.extend((t, s, None) for (t, s) in parent.keys() - state.keys())
            depth = parent_depth + 1
            if depth <= max_delta_depth(len(state)) and len(delta) <= max(len(state) // 2, 8):
                return await self._write_snapshot(txn, room_nid, parent_nid, depth, delta, state)
        full: list[tuple[int, int, int | None]] = [(t, s, e) for (t, s), e in state.items()]
        return await self._write_snapshot(txn, room_nid, None, 0, full, state)

    async def _write_snapshot(self, txn: Txn, room_nid: int, parent_nid: int | None, depth: int,
                              entries: list[tuple[int, int, int | None]], state: StateMap) -> int:
        if txn.postgres:
            nid = await _INSERT_SNAPSHOT_PG.scalar(txn.conn, {
                "room_nid": room_nid, "parent_nid": parent_nid, "delta_depth": depth,
                "type_nids": [t for t, _, _ in entries], "state_key_nids": [s for _, s, _ in entries],
                "event_nids": [e for _, _, e in entries]})
            assert nid is not None
            snapshot_nid = int(nid)
        else:
            nid = await txn.conn.scalar(
                state_snapshots.insert().values(room_nid=room_nid, parent_nid=parent_nid, delta_depth=depth)
                .returning(state_snapshots.c.snapshot_nid))
            assert nid is not None
            snapshot_nid = int(nid)
            for chunk in _chunks(entries):
                await txn.conn.execute(state_entries.insert(), [
                    {"snapshot_nid": snapshot_nid, "type_nid": t, "state_key_nid": s, "event_nid": e}
                    for t, s, e in chunk])
        txn.local.snapshots[snapshot_nid] = dict(state)
        txn.local.snapshot_depths[snapshot_nid] = depth
        return snapshot_nid

    # -- memberships ---------------------------------------------------------

    async def set_membership(self, txn: Txn, room_nid: int, target_nid: int, membership_value: str,
                             event_nid: int) -> None:
        _note_membership_write(txn, room_nid, membership_value == "join")
        await txn.conn.execute(self.db.upsert(
            membership, {"room_nid": room_nid, "target_nid": target_nid, "membership": membership_value,
                         "event_nid": event_nid}, ["room_nid", "target_nid"]))

    async def set_memberships(self, txn: Txn, room_nid: int, rows: Mapping[int, tuple[str, int]]) -> None:
        """Several at once: target NID -> (membership, event NID)."""
        values = [{"room_nid": room_nid, "target_nid": target, "membership": value, "event_nid": event_nid}
                  for target, (value, event_nid) in sorted(rows.items())]
        _note_membership_write(txn, room_nid, all(value == "join" for value, _ in rows.values()))
        await membership_t.upsert_memberships(txn.conn, values)

    async def delete_memberships(self, txn: Txn, room_nid: int, target_nids: Collection[int]) -> None:
        _note_membership_write(txn, room_nid, False)
        for chunk in _chunks(target_nids):
            await txn.conn.execute(delete(membership).where(membership.c.room_nid == room_nid,
                                                            membership.c.target_nid.in_(chunk)))

    async def membership_of(self, txn: Txn, room_nid: int, user_id: str) -> MembershipRow | None:
        target_nid = (await self.state_key_nids(txn, [user_id], create=False)).get(user_id)
        if target_nid is None:
            return None
        found = await _MEMBERSHIP_OF.rows(txn.conn, {"room_nid": room_nid, "target_nid": target_nid})
        if not found:
            return None
        membership_value, event_nid = found[0]
        return MembershipRow(room_nid, user_id, membership_value, event_nid)

    async def memberships_in_room(self, txn: Txn, room_nid: int, *, joined_only: bool) -> list[MembershipRow]:
        query = (select(membership, event_state_keys.c.state_key)
                 .join(event_state_keys, event_state_keys.c.state_key_nid == membership.c.target_nid)
                 .where(membership.c.room_nid == room_nid))
        if joined_only:
            query = query.where(membership.c.membership == "join")
        rows = await txn.conn.execute(query)
        return [MembershipRow(row.room_nid, row.state_key, row.membership, row.event_nid) for row in rows]

    async def joined_member_count(self, txn: Txn, room_nid: int) -> int:
        value = await txn.conn.scalar(select(func.count()).select_from(membership).where(
            membership.c.room_nid == room_nid, membership.c.membership == "join"))
        return int(value or 0)

    async def rooms_for_user(self, txn: Txn, user_id: str, membership_value: str | None) -> list[str]:
        query = (select(rooms.c.room_id)
                 .join(membership, membership.c.room_nid == rooms.c.room_nid)
                 .join(event_state_keys, event_state_keys.c.state_key_nid == membership.c.target_nid)
                 .where(event_state_keys.c.state_key == user_id))
        if membership_value:
            query = query.where(membership.c.membership == membership_value)
        else:
            query = query.where(membership.c.membership != "leave")
        rows = await txn.conn.execute(query.order_by(rooms.c.room_id))
        return [row.room_id for row in rows]

    # -- the output outbox ---------------------------------------------------

    async def add_to_outbox(self, txn: Txn, room_nid: int, event_nid: int, payloads: list[bytes]) -> None:
        """Written, in order, when ``txn`` commits (nothing reads the outbox
        inside an input transaction)."""
        txn.outbox.extend({"room_nid": room_nid, "event_nid": event_nid, "payload": p} for p in payloads)

    async def outbox_for_events(self, txn: Txn, event_nids: Collection[int] | None
                                ) -> list[tuple[int, int, int, bytes]]:
        """(outbox NID, room NID, event NID, payload) in the order written;
        every pending entry when ``event_nids`` is None."""
        query = select(output_outbox.c.outbox_nid, output_outbox.c.room_nid, output_outbox.c.event_nid,
                       output_outbox.c.payload).order_by(output_outbox.c.outbox_nid)
        if event_nids is not None:
            if not event_nids:
                return []
            query = query.where(output_outbox.c.event_nid.in_(list(event_nids)))
        rows = await txn.conn.execute(query)
        return [(int(r.outbox_nid), int(r.room_nid), int(r.event_nid), bytes(r.payload)) for r in rows]

    async def mark_events_sent(self, txn: Txn, event_nids: Collection[int]) -> None:
        """Forgets every outbox entry of ``event_nids`` and marks them sent."""
        for chunk in _chunks(event_nids):
            await _DELETE_OUTBOX_OF_EVENTS_PREBUILT.execute(txn.conn, {"nids": chunk})
            await _MARK_EVENTS_SENT_PREBUILT.execute(txn.conn, {"nids": chunk})
        self._note_sent(txn, event_nids)

    @staticmethod
    def _note_sent(txn: Txn, event_nids: Iterable[int]) -> None:
        for nid in event_nids:
            cached = txn.local.records.get(nid)
            if cached is not None:
                cached.sent_to_output = True

    async def mark_sent(self, txn: Txn, outbox_nids: Collection[int], event_nids: Collection[int]) -> None:
        for chunk in _chunks(outbox_nids):
            await txn.conn.execute(delete(output_outbox).where(output_outbox.c.outbox_nid.in_(chunk)))
        for chunk in _chunks(event_nids):
            await txn.conn.execute(update(events).where(events.c.event_nid.in_(chunk))
                                   .values(sent_to_output=True))
        self._note_sent(txn, event_nids)

    # -- redactions waiting for their target -------------------------------

    async def add_pending_redaction(self, txn: Txn, redaction_event_nid: int, redacts_event_id: str) -> None:
        await txn.conn.execute(self.db.insert_or_ignore(pending_redactions, {
            "redaction_event_nid": redaction_event_nid, "redacts_event_id": redacts_event_id}))
        waiting = txn.local.waiting_redactions.get(redacts_event_id)
        if redacts_event_id in txn.local.prefetched and waiting is not None \
                and redaction_event_nid not in waiting:
            waiting.append(redaction_event_nid)

    async def pending_redactions_of(self, txn: Txn, event_id: str) -> list[int]:
        """NIDs of the redactions waiting for ``event_id``."""
        if event_id in txn.local.prefetched:
            return list(txn.local.waiting_redactions[event_id])
        rows = await txn.conn.execute(select(pending_redactions.c.redaction_event_nid).where(
            pending_redactions.c.redacts_event_id == event_id))
        return [int(row[0]) for row in rows]

    async def delete_pending_redactions(self, txn: Txn, event_id: str) -> None:
        await txn.conn.execute(delete(pending_redactions).where(
            pending_redactions.c.redacts_event_id == event_id))
        if event_id in txn.local.prefetched:
            txn.local.waiting_redactions[event_id] = []

    # -- room aliases ----------------------------------------------------------

    async def add_alias(self, txn: Txn, alias: str, room_id: str, creator: str) -> bool:
        """False when the alias is taken."""
        result = await txn.conn.execute(self.db.insert_or_ignore(
            room_aliases, {"alias": alias, "room_id": room_id, "creator": creator}, ["alias"]))
        return bool(result.rowcount)

    async def alias(self, txn: Txn, alias: str) -> tuple[str, str] | None:
        """(room ID, creator) of an alias."""
        row = (await txn.conn.execute(select(room_aliases.c.room_id, room_aliases.c.creator)
                                      .where(room_aliases.c.alias == alias))).first()
        return (row.room_id, row.creator) if row is not None else None

    async def aliases_of_room(self, txn: Txn, room_id: str) -> list[str]:
        rows = await txn.conn.execute(select(room_aliases.c.alias).where(room_aliases.c.room_id == room_id)
                                      .order_by(room_aliases.c.alias))
        return [row.alias for row in rows]

    async def remove_alias(self, txn: Txn, alias: str) -> None:
        await txn.conn.execute(delete(room_aliases).where(room_aliases.c.alias == alias))

    # -- input failures ------------------------------------------------------

    async def record_input_failure(self, txn: Txn, *, request_id: str, room_id: str, event_id: str,
                                   reason: str, payload: bytes | None) -> None:
        await txn.conn.execute(input_failures.insert().values(
            request_id=request_id, room_id=room_id, event_id=event_id, reason=reason, payload=payload,
            created_ts=int(time.time() * 1000)))

    async def input_failures_for(self, txn: Txn, *, request_id: str | None = None,
                                 event_ids: Collection[str] = ()) -> list[tuple[str, str, str]]:
        """(request_id, event_id, reason) of recorded failures."""
        query = select(input_failures.c.request_id, input_failures.c.event_id, input_failures.c.reason)
        if request_id is not None:
            query = query.where(input_failures.c.request_id == request_id)
        if event_ids:
            query = query.where(input_failures.c.event_id.in_(list(event_ids)))
        rows = await txn.conn.execute(query.order_by(input_failures.c.failure_nid))
        return [(r.request_id, r.event_id, r.reason) for r in rows]


def _note_membership_write(txn: Txn, room_nid: int, joins_only: bool) -> None:
    txn.membership_writes[room_nid] = txn.membership_writes.get(room_nid, True) and joins_only
