"""The sync API's storage facade: owns every transaction.

Writes (the room-server consumer) each take one transaction and the next
global stream position(s); reads go through ``read()``, a ``Reader`` bound to
one connection for the duration of a request.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence, Set
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Integer,
    Select,
    and_,
    bindparam,
    false,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from common.prebuilt import PrebuiltStatement
from common.sqlite_connection import InlineDBAPI
from common.storage import Database
from matrixlib.events import Event
from syncapi.filters import EventFilter
from syncapi.storage.tables import account_data as account_data_t
from syncapi.storage.tables import current_state as state_t
from syncapi.storage.tables import device_lists as device_lists_t
from syncapi.storage.tables import events as events_t
from syncapi.storage.tables import filters as filters_t
from syncapi.storage.tables import invites as invites_t
from syncapi.storage.tables import message_runs_pg
from syncapi.storage.tables import notifications as notifications_t
from syncapi.storage.tables import presence as presence_t
from syncapi.storage.tables import receipts as receipts_t
from syncapi.storage.tables import relations as relations_t
from syncapi.storage.tables import room_positions as positions_t
from syncapi.storage.tables import search as search_t
from syncapi.storage.tables import send_to_device as to_device_t
from syncapi.storage.tables import stream_position as stream_t
from syncapi.storage.tables import user_directory as directory_t
from syncapi.storage.tables.account_data import StoredAccountData
from syncapi.storage.tables.current_state import MEMBER, StateEntry
from syncapi.storage.tables.events import StoredEvent
from syncapi.storage.tables.invites import StoredInvite
from syncapi.storage.tables.notifications import ReadUpTo, StoredNotification
from syncapi.storage.tables.presence import StoredPresence
from syncapi.storage.tables.receipts import StoredReceipt
from syncapi.storage.tables.relations import StoredRelation
from syncapi.storage.tables.send_to_device import StoredToDevice

logger = logging.getLogger(__name__)

# State deltas larger than this are applied in bulk.
BULK_STATE_DELTA = 32

# Stripped state a client shows for an invite (the spec's recommended set).
INVITE_STATE_TYPES = ("m.room.create", "m.room.name", "m.room.avatar", "m.room.topic",
                      "m.room.join_rules", "m.room.canonical_alias", "m.room.encryption")


@dataclass(frozen=True)
class NewEvent:
    """An event to store, with what the output log said about it."""

    event: Event
    historical: bool
    history_visibility: str
    txn_user_id: str | None = None
    txn_device_id: str | None = None
    txn_id: str | None = None


class _Unread:
    """A value not read yet (None is a value: no current entry)."""


_UNREAD = _Unread()


class _PushRulesFailed(Exception):
    """The push rules failed inside the events' transaction (the cause is the failure)."""


class MissedEntries(Exception):
    """``write_room_events`` was told which event the batch follows, and the
    room's last stored event is another (a gap, or a replay)."""


@dataclass(frozen=True)
class RoomEventWrite:
    """A timeline event with the output log's annotations (``write_room_events``)."""

    new: NewEvent
    adds_state_event_ids: Sequence[str]
    removes_state_event_ids: Sequence[str]
    adds_state_events: Sequence[Event]
    room_stream_position: int


@dataclass
class Applied:
    """What a write changed: the position it took, whom it concerns besides
    the room's members, and the memberships it changed."""

    position: int
    room_id: str
    user_ids: set[str] = field(default_factory=set)
    memberships: dict[str, str | None] = field(default_factory=dict)
    # The room's state was replaced wholesale (after a gap).
    rebuilt: bool = False


def relation_of(content: Any) -> tuple[str, str] | None:
    """(parent event ID, rel_type) of an event's ``m.relates_to``, if it has both."""
    relates_to = content.get("m.relates_to") if isinstance(content, dict) else None
    if not isinstance(relates_to, dict):
        return None
    parent, rel_type = relates_to.get("event_id"), relates_to.get("rel_type")
    if isinstance(parent, str) and isinstance(rel_type, str):
        return parent, rel_type
    return None


def _contains_url(event: Event) -> bool:
    return isinstance(event.content.get("url"), str)


def _stored(event: Event, position: int, *, state_only: bool, historical: bool,
            history_visibility: str, unsigned: dict[str, Any] | None = None,
            txn_device_id: str | None = None, txn_id: str | None = None) -> StoredEvent:
    return StoredEvent(
        stream_pos=position, room_id=event.room_id, event_id=event.event_id, type=event.type,
        sender=event.sender, state_key=event.state_key, depth=event.depth,
        room_version=event.room_version.identifier, event_json=event.to_json().decode(),
        unsigned_json=json.dumps(unsigned) if unsigned else None,
        history_visibility=history_visibility or "shared", historical=historical,
        state_only=state_only, contains_url=_contains_url(event), txn_device_id=txn_device_id,
        txn_id=txn_id, origin_server_ts=event.origin_server_ts,
    )


def _is_plain(write: RoomEventWrite) -> bool:
    """Not a state event, and no state change comes with it."""
    return (write.new.event.state_key is None and not write.adds_state_event_ids
            and not write.removes_state_event_ids and not write.adds_state_events)


def _stripped(pdu: dict[str, Any]) -> dict[str, Any]:
    return {"type": pdu.get("type"), "state_key": pdu.get("state_key"),
            "content": pdu.get("content", {}), "sender": pdu.get("sender")}


#: Stored filters kept in memory (see SyncDatabase.get_filter).
FILTERS_KEPT = 10_000

#: Rooms whose last event written is kept in memory (see SyncDatabase._last_written).
LAST_WRITTEN_ROOMS = 2_000

#: The global account data types the sync API derives something from (push
#: rule evaluation's rule sets and ignored users).
DERIVED_ACCOUNT_DATA = frozenset({"m.push_rules", "m.ignored_user_list"})

#: Reads what push rule evaluation needs on the events' own transaction and
#: answers the notifications of the live events written (event, position).
PushRulesRun = Callable[["Reader", Sequence[tuple[Event, int]]], Awaitable[Sequence[StoredNotification]]]


def _build_joined_rooms_news() -> Select[Any]:
    e = events_t.events.c
    m = state_t.current_room_state.c
    return select(events_t.events, m.added_pos.label("join_pos")).select_from(events_t.events.join(
        state_t.current_room_state,
        and_(m.room_id == e.room_id, m.type == MEMBER, m.state_key == bindparam("b_user_id"),
             m.membership == "join"),
    )).where(e.stream_pos > bindparam("b_after"), e.stream_pos <= bindparam("b_upto"), e.state_only == false(),
             e.historical == false()).order_by(e.stream_pos.desc()).limit(bindparam("b_limit"))


# Built once: every woken /sync runs it (Reader.joined_rooms_news).
_JOINED_ROOMS_NEWS = _build_joined_rooms_news()


def _build_joined_rooms_news_and_counts() -> CompoundSelect[Any]:
    """``_JOINED_ROOMS_NEWS`` and the user's unread counts in the rooms it
    finds, in one statement: the news rows (``kind`` 0), then the counts
    (``kind`` 1) in the news rows' shape, in the room ID column and the
    three last, NULL elsewhere."""
    news = _JOINED_ROOMS_NEWS.cte("news")
    counts = notifications_t.build_unread_counts(select(news.c.room_id).distinct()).subquery("counts")
    count_room, count_thread, count_all, count_highlights = counts.c
    filler = [count_room if c.name == "room_id" else null().label(c.name) for c in news.c]
    return union_all(
        select(literal(0, Integer).label("kind"), *news.c, null().label("count_thread"),
               null().label("count_all"), null().label("count_highlights")),
        select(literal(1, Integer), *filler, count_thread, count_all, count_highlights),
    )


# Built once: on PostgreSQL every woken /sync runs it (Reader.joined_rooms_news),
# on asyncpg directly (~150 us of SQLAlchemy's Python fewer).
_JOINED_ROOMS_NEWS_AND_COUNTS = PrebuiltStatement(_build_joined_rooms_news_and_counts())


class SyncDatabase:
    def __init__(self, database: Database) -> None:
        self._db = database
        # Told of every stream position this process takes, so that positions
        # taken by other processes sharing the database can be told apart
        # (see Notifier.note_database_position).
        self.on_positions_taken: Callable[[range], None] | None = None
        # The same for the other streams' counters: (positions, stream name).
        self.on_stream_positions_taken: Callable[[range, str], None] | None = None
        # Told, inside the write's transaction, of the users whose own
        # membership or invites a write at a room-event position changes
        # (see Notifier.memberships_changing).
        self.on_memberships_changing: Callable[[int, set[str]], None] | None = None
        # (user, filter ID) -> the stored filter, the most recently used last.
        self._filters: OrderedDict[tuple[str, int], str] = OrderedDict()
        # room ID -> the last event this process wrote for it (committed; the
        # oldest room first): a run of new messages that follows on from it
        # skips reading the room's last event and which of the run is stored.
        # Another process sharing the database can only have written after
        # it if the run says it follows something else; a run re-sent after
        # another process wrote it fails on the events' unique event ID, and
        # a failed write forgets the room, so its retry reads.
        self._last_written: dict[str, str] = {}
        # PostgreSQL: reads run without BEGIN and ROLLBACK, two round trips
        # fewer for a woken /sync's two statements. Under READ COMMITTED (the
        # default) each statement of a transaction takes a snapshot of its
        # own anyway, so the reads see what they saw inside one; nothing
        # writes through read() (its transaction was rolled back).
        self._autocommit_reads = (database.engine.execution_options(isolation_level="AUTOCOMMIT")
                                  if database.dialect_name == "postgresql" else None)
        # One-statement writes under way (see settled_positions).
        self._writes_in_flight = 0
        # Whether closing a connection never waits (the inline SQLite driver).
        self._closes_at_once = isinstance(database.engine.dialect.loaded_dbapi, InlineDBAPI)

    def _memberships_changing(self, applied: Applied) -> Applied:
        if applied.user_ids and self.on_memberships_changing is not None:
            self.on_memberships_changing(applied.position, applied.user_ids)
        return applied

    async def _take_positions(self, conn: AsyncConnection, count: int) -> range:
        positions = await stream_t.next_positions(conn, count)
        if self.on_positions_taken is not None:
            self.on_positions_taken(positions)
        return positions

    async def _take_position(self, conn: AsyncConnection) -> int:
        return (await self._take_positions(conn, 1))[0]

    async def _take_stream_position(self, conn: AsyncConnection, stream: str) -> int:
        position = await stream_t.next_position(conn, stream)
        if self.on_stream_positions_taken is not None:
            self.on_stream_positions_taken(range(position, position + 1), stream)
        return position

    @property
    def database(self) -> Database:
        return self._db

    async def close(self) -> None:
        await self._db.close()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Reader]:
        if self._autocommit_reads is not None:
            async with self._autocommit_reads.connect() as conn:
                yield Reader(conn)
            return
        if not self._closes_at_once:
            async with self._db.connect() as conn:
                yield Reader(conn)
            return
        # Closed here, not in a task of its own as AsyncConnection's exit does
        # (so that a cancellation cannot cut a close short): on the inline
        # SQLite driver a close never waits. A woken /sync's answer then goes
        # out without the loop first running whatever else is ready.
        conn = await self._db.engine.connect()
        try:
            yield Reader(conn)
        finally:
            await conn.close()

    # -- consumer writes --------------------------------------------------------------------

    async def current_position(self) -> int:
        async with self._db.connect() as conn:
            return await stream_t.current_position(conn)

    async def current_positions(self) -> dict[str, int]:
        """Every stream's position by the notifier's stream names (``pdu``
        for the room-event stream). Read as other reads are (on PostgreSQL
        without BEGIN and ROLLBACK: the periodic check costs one round trip)."""
        async with self.read() as reader:
            found = await stream_t.current_positions(reader.conn)
        return {("pdu" if name == stream_t.GLOBAL_STREAM else name): position
                for name, position in found.items()}

    async def settled_positions(self) -> dict[str, int] | None:
        """``current_positions`` for the periodic check for other processes'
        writes; None when a one-statement write of this process was under
        way as they were read: its positions are committed before this
        process is told of them, so the read could take them for another
        process's (the check is simply made again at its next period)."""
        if self._writes_in_flight:
            return None
        positions = await self.current_positions()
        return None if self._writes_in_flight else positions

    async def last_event_id(self, room_id: str) -> str | None:
        async with self.read() as reader:
            return await positions_t.select_last_event_id(reader.conn, room_id)

    async def is_known_event(self, event_id: str, *, in_timeline: bool = False) -> bool:
        """Whether the event is stored (``in_timeline``: as a timeline event, not only as state)."""
        async with self.read() as reader:
            found = (await events_t.select_events_by_ids(reader.conn, [event_id])).get(event_id)
        return found is not None and not (in_timeline and found.state_only)

    async def write_room_event(
        self, new: NewEvent, *, adds_state_event_ids: Sequence[str],
        removes_state_event_ids: Sequence[str], adds_state_events: Sequence[Event],
        room_stream_position: int, local_server: str,
    ) -> Applied | None:
        """Appends a timeline event and applies its state delta; None when
        the event was already stored (the room server re-sent it)."""
        return (await self.write_room_events([RoomEventWrite(
            new, adds_state_event_ids=adds_state_event_ids, removes_state_event_ids=removes_state_event_ids,
            adds_state_events=adds_state_events, room_stream_position=room_stream_position)],
            local_server=local_server))[0]

    async def write_room_events(self, writes: Sequence[RoomEventWrite], *, local_server: str,
                                follows: str | None = None) -> list[Applied | None]:
        """``write_room_event`` for several events of one room, in order, in
        one transaction (all or nothing). With ``follows``, raises
        ``MissedEntries`` (writing nothing) unless the last event written for
        the room is that one."""
        results, _ = await self.write_room_events_with_push(writes, local_server=local_server, follows=follows)
        return results

    async def write_room_events_with_push(
            self, writes: Sequence[RoomEventWrite], *, local_server: str, follows: str | None = None,
            push: PushRulesRun | None = None) -> tuple[list[Applied | None], list[StoredNotification]]:
        """``write_room_events``, and in the same transaction the push rule
        results for the live events written: ``push`` reads what it needs on
        this transaction's connection (the room's state after the batch) and
        answers the notifications, stored here with the events. One
        transaction instead of three (events, the rules' reads, the
        notifications) is what lets a busy room's wake-ups go out sooner.
        A failing ``push`` loses its notifications, not the events."""
        if self._db.dialect_name == "postgresql" and follows is not None:
            written = await self._write_run_in_one_statement(writes, follows=follows, push=push)
            if written is not None:
                return written
        room_ids = {write.new.event.room_id for write in writes}
        try:
            results, notifications = await self._write_room_events_with_push(
                writes, local_server=local_server, follows=follows, push=push)
        except BaseException:
            for room_id in room_ids:
                self._last_written.pop(room_id, None)
            raise
        for write, applied in zip(writes, results, strict=True):
            if applied is not None:
                self._note_last_written(write.new.event.room_id, write.new.event.event_id)
        return results, notifications

    async def _write_run_in_one_statement(
            self, writes: Sequence[RoomEventWrite], *, follows: str, push: PushRulesRun | None,
    ) -> tuple[list[Applied | None], list[StoredNotification]] | None:
        """PostgreSQL: a run of plain messages that follows on from what
        this process wrote last, in one statement (see
        ``tables.message_runs_pg``); None, having written nothing, when the
        run is not one (the transaction path then writes it).

        The push rules are evaluated first, on the connection the statement
        then runs on (a plain run changes no state: the room's state before
        it is the state after it), with the events' ordinals for positions."""
        if not writes:
            return None
        room_id = writes[0].new.event.room_id
        if (self._last_written.get(room_id) != follows or not all(map(_is_plain, writes))
                or any(w.new.event.room_id != room_id or relation_of(w.new.event.content) is not None
                       for w in writes)
                or len({w.new.event.event_id for w in writes}) != len(writes)):
            return None
        rows: list[StoredEvent] = []
        search_entries: list[tuple[int, str, str, str]] = []
        live: list[tuple[Event, int]] = []
        for ordinal, write in enumerate(writes, 1):
            new = write.new
            event = new.event
            txn_ok = new.txn_id and new.txn_user_id == event.sender
            rows.append(_stored(event, 0, state_only=False, historical=new.historical,
                                history_visibility=new.history_visibility,
                                txn_device_id=new.txn_device_id if txn_ok else None,
                                txn_id=new.txn_id if txn_ok else None))
            indexed = search_t.indexed_text(event)
            if indexed is not None:
                search_entries.append((ordinal, event.event_id, indexed[0], indexed[1]))
            if not new.historical:
                live.append((event, ordinal))
        last = writes[-1]
        # Imported here: the single process (SQLite) never loads asyncpg.
        from asyncpg import PostgresError
        self._writes_in_flight += 1
        try:
            # Without BEGIN: the rules' reads (if any) as other reads, and
            # the statement a transaction of its own.
            assert self._autocommit_reads is not None
            async with self._autocommit_reads.connect() as conn:
                notifications: list[StoredNotification] = []
                if push is not None and live:
                    try:
                        notifications = list(await push(Reader(conn), live))
                    except Exception:
                        logger.warning("push rules not evaluated for %d events of %s", len(live), room_id,
                                       exc_info=True)
                        notifications = []
                    if conn.in_transaction():
                        await conn.rollback()  # SQLAlchemy's own view of the reads: nothing sent
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                try:
                    base = await driver.fetchval(message_runs_pg.WRITE_RUN_SQL, *message_runs_pg.write_run_args(
                        room_id, rows, search_entries, last.new.event.event_id, last.room_stream_position,
                        notifications))
                except PostgresError:
                    # Nothing was written (an event stored already, ...): the
                    # transaction path reads what is stored and sorts it out.
                    logger.debug("one-statement write of %d events of %s refused", len(writes), room_id,
                                 exc_info=True)
                    self._last_written.pop(room_id, None)
                    return None
                except BaseException:
                    # A lost connection or a cancelled statement: not given back as it is.
                    self._last_written.pop(room_id, None)
                    await conn.invalidate()
                    raise
            positions = range(int(base) + 1, int(base) + len(writes) + 1)
            if self.on_positions_taken is not None:
                self.on_positions_taken(positions)
        finally:
            self._writes_in_flight -= 1
        self._note_last_written(room_id, last.new.event.event_id)
        start = positions.start - 1
        return ([Applied(position=position, room_id=room_id) for position in positions],
                [row._replace(stream_pos=start + row.stream_pos) for row in notifications])

    def _note_last_written(self, room_id: str, event_id: str) -> None:
        self._last_written.pop(room_id, None)
        if len(self._last_written) >= LAST_WRITTEN_ROOMS:
            del self._last_written[next(iter(self._last_written))]
        self._last_written[room_id] = event_id

    async def _write_room_events_with_push(
            self, writes: Sequence[RoomEventWrite], *, local_server: str, follows: str | None,
            push: PushRulesRun | None) -> tuple[list[Applied | None], list[StoredNotification]]:
        try:
            return await self._write_room_events_once(writes, local_server=local_server, follows=follows,
                                                      push=push)
        except _PushRulesFailed as failed:
            # PostgreSQL: the failed statement aborted the transaction. The
            # events are written again without the rules (a savepoint would
            # cost two more round trips on every state change, for a failure
            # that is a bug).
            logger.warning("push rules not evaluated for %d events of %s", len(writes),
                           writes[0].new.event.room_id, exc_info=failed.__cause__)
            results, _ = await self._write_room_events_once(writes, local_server=local_server, follows=follows,
                                                            push=None)
            return results, []

    async def _write_room_events_once(
            self, writes: Sequence[RoomEventWrite], *, local_server: str, follows: str | None,
            push: PushRulesRun | None) -> tuple[list[Applied | None], list[StoredNotification]]:
        async with self._db.transaction() as conn:
            results = await self._write_room_events(conn, writes, local_server=local_server, follows=follows)
            notifications: list[StoredNotification] = []
            live = [(write.new.event, applied.position) for write, applied in zip(writes, results, strict=True)
                    if applied is not None and not write.new.historical]
            if push is not None and live:
                try:
                    notifications = list(await push(Reader(conn), live))
                    await notifications_t.insert_notifications(conn, notifications)
                except Exception as error:
                    if self._db.dialect_name != "sqlite":
                        raise _PushRulesFailed() from error
                    # On SQLite a failed statement leaves the transaction as it was.
                    logger.warning("push rules not evaluated for %d events of %s", len(live),
                                   live[0][0].room_id, exc_info=True)
                    notifications = []
        return results, notifications

    async def _write_room_events(self, conn: AsyncConnection, writes: Sequence[RoomEventWrite], *,
                                 local_server: str, follows: str | None) -> list[Applied | None]:
        # Which are stored already (timeline: False, only as state: True),
        # read once for the batch and kept up to date as it is written; and
        # the room's last applied event, read with them.
        event_ids = [w.new.event.event_id for w in writes]
        room_id = writes[0].new.event.room_id if writes else ""
        stored_last: str | None
        stored: dict[str, bool]
        # A state event written alone (a join, a leave): the entry it replaces
        # is read with the rest (see _write_room_event's ``previous``).
        previous: StateEntry | _Unread | None = _UNREAD
        alone = writes[0] if len(writes) == 1 else None
        if follows is not None and self._last_written.get(room_id) == follows and all(map(_is_plain, writes)):
            # Follows on from what this process wrote last (see _last_written).
            stored_last, stored = follows, {}
        elif (alone is not None and alone.new.event.state_key is not None and not alone.new.historical
              and len(event_ids) <= positions_t.LAST_AND_STORED_MAX_IDS):
            stored_last, stored, previous = await positions_t.select_last_stored_and_current(
                conn, room_id, event_ids, alone.new.event.type, alone.new.event.state_key)
        elif len(event_ids) <= positions_t.LAST_AND_STORED_MAX_IDS:
            stored_last, stored = await positions_t.select_last_and_stored(conn, room_id, event_ids)
        else:
            stored_last = await positions_t.select_last_event_id(conn, room_id)
            stored = {event_id: row.state_only
                      for event_id, row in (await events_t.select_events_by_ids(conn, event_ids)).items()}
        if follows is not None and writes and stored_last != follows:
            raise MissedEntries(f"{room_id}: the last event stored is {stored_last}, not {follows}")
        results: list[Applied | None]
        if not stored and len(set(event_ids)) == len(event_ids) and all(map(_is_plain, writes)):
            # The common case (a run of messages): a few statements for the whole run.
            results = list(await self._write_plain_events(conn, writes))
        else:
            results = [await self._write_room_event(conn, write, local_server, stored, previous=previous)
                       for write in writes]
        # Only the last event written per room names the room's position.
        last: dict[str, RoomEventWrite] = {}
        for write, applied in zip(writes, results, strict=True):
            if applied is not None:
                last[write.new.event.room_id] = write
        for room_id, write in last.items():
            await self._set_room_position(conn, room_id, write.new.event.event_id, write.room_stream_position)
        return results

    async def _write_plain_events(self, conn: AsyncConnection, writes: Sequence[RoomEventWrite]) -> list[Applied]:
        """New timeline events that are not state and change no state: what
        ``_write_room_event`` does for each, in one statement per table."""
        positions = await self._take_positions(conn, len(writes))
        rows: list[StoredEvent] = []
        search_entries: list[dict[str, object]] = []
        for write, position in zip(writes, positions, strict=True):
            new = write.new
            event = new.event
            txn_ok = new.txn_id and new.txn_user_id == event.sender
            rows.append(_stored(event, position, state_only=False, historical=new.historical,
                                history_visibility=new.history_visibility,
                                txn_device_id=new.txn_device_id if txn_ok else None,
                                txn_id=new.txn_id if txn_ok else None))
            indexed = search_t.indexed_text(event)
            if indexed is not None:
                search_entries.append({"pos": position, "event_id": event.event_id, "room_id": event.room_id,
                                       "key": indexed[0], "value": indexed[1]})
        await events_t.insert_events(conn, rows)
        for write, position in zip(writes, positions, strict=True):
            await self._store_relation(conn, write.new.event, position)
        await search_t.insert_entries(conn, search_entries)
        return [Applied(position=position, room_id=write.new.event.room_id)
                for write, position in zip(writes, positions, strict=True)]

    async def _write_room_event(self, conn: AsyncConnection, write: RoomEventWrite,
                                local_server: str, stored: dict[str, bool], *,
                                previous: StateEntry | _Unread | None = _UNREAD) -> Applied | None:
        """``previous``: the room's current entry for the event's state key,
        when the caller read it in this transaction before any state change."""
        new = write.new
        adds_state_event_ids = write.adds_state_event_ids
        removes_state_event_ids = write.removes_state_event_ids
        adds_state_events = write.adds_state_events
        event = new.event
        room_id = event.room_id
        state_only = stored.get(event.event_id)
        if state_only is not None:
            if not state_only:
                return None
            # Seen before only as state (e.g. resolved in): now it enters the timeline.
            await events_t.delete_event(conn, event.event_id)
        state_events = [e for e in adds_state_events if e.event_id != event.event_id]
        await self._store_state_only(conn, state_events)
        for state_event in state_events:
            stored.setdefault(state_event.event_id, True)
        stored[event.event_id] = False
        # State that came with the event but is not the event itself (state
        # resolution, or the whole state of a room joined over federation)
        # is in force just before it, at a position of its own: /sync's
        # "state at the start of the timeline" then includes it.
        own_key = (event.type, event.state_key) if (
            event.state_key is not None and event.event_id in adds_state_event_ids) else None
        other_adds = [a for a in adds_state_event_ids if a != event.event_id]
        removed_entries: list[StateEntry]
        if (not isinstance(previous, _Unread) and previous is not None
                and list(removes_state_event_ids) == [previous.event_id]):
            removed_entries = [previous]  # the entry it replaces, read already
        else:
            removed_entries = await state_t.select_current_entries_by_event_ids(
                conn, room_id, list(removes_state_event_ids))
        own_removes = [e.event_id for e in removed_entries if (e.type, e.state_key) == own_key]
        other_removes = [e.event_id for e in removed_entries if (e.type, e.state_key) != own_key]
        before_position: int | None = None
        if not new.historical and (other_adds or other_removes):
            before_position = await self._take_position(conn)
        position = await self._take_position(conn)
        unsigned: dict[str, Any] = {}
        if not event.is_state() or new.historical:
            previous = None
        elif isinstance(previous, _Unread):
            previous = await state_t.select_current_entry(conn, room_id, event.type,
                                                          event.state_key or "")
        if previous is not None and previous.event_id != event.event_id:
            unsigned = await self._prev_unsigned(conn, previous.event_id)
        txn_ok = new.txn_id and new.txn_user_id == event.sender
        await events_t.insert_event(conn, _stored(
            event, position, state_only=False, historical=new.historical,
            history_visibility=new.history_visibility, unsigned=unsigned,
            txn_device_id=new.txn_device_id if txn_ok else None,
            txn_id=new.txn_id if txn_ok else None))
        await self._store_relation(conn, event, position)
        applied = Applied(position=position, room_id=room_id)
        await _index_event(conn, event, position, current=not new.historical)
        if not new.historical:
            known = {event.event_id: event, **{e.event_id: e for e in adds_state_events}}
            if before_position is not None:
                applied.memberships.update(await self._apply_state_delta(
                    conn, room_id, before_position, other_adds, other_removes, known))
            for state_event in adds_state_events:
                if state_event.event_id in other_adds:
                    await _update_directory(conn, state_event)
            if own_key is not None or own_removes:
                # The entry the event replaces was read above, unless other
                # state changed since (then it is read again).
                current = {own_key: previous} if own_key is not None and before_position is None else None
                removing = ([e for e in removed_entries if e.event_id in own_removes]
                            if before_position is None else None)
                applied.memberships.update(await self._apply_state_delta(
                    conn, room_id, position, [event.event_id] if own_key else [], own_removes, known,
                    current=current, removing=removing))
            applied.user_ids.update(applied.memberships)
            if event.type == MEMBER and event.state_key is not None:
                applied.user_ids.add(event.state_key)
                await self._track_invite(conn, event, position, local_server)
        return self._memberships_changing(applied)

    async def rebuild_room_state(self, room_id: str, state_events: Sequence[Event]) -> Applied:
        """Replaces the room's current state with the room server's (after a
        missed output entry), as one state change at a new position."""
        async with self._db.transaction() as conn:
            await self._store_state_only(conn, state_events)
            position = await self._take_position(conn)
            wanted = {(e.type, e.state_key or ""): e for e in state_events if e.is_state()}
            current = {(c.type, c.state_key): c for c in await state_t.select_current_state(conn, room_id)}
            removes = [c.event_id for key, c in current.items()
                       if key not in wanted or wanted[key].event_id != c.event_id]
            adds = [e.event_id for key, e in wanted.items()
                    if key not in current or current[key].event_id != e.event_id]
            applied = Applied(position=position, room_id=room_id, rebuilt=True)
            applied.memberships = await self._apply_state_delta(
                conn, room_id, position, adds, removes, {e.event_id: e for e in state_events})
            added = set(adds)
            for state_event in state_events:
                if state_event.event_id in added:
                    await _update_directory(conn, state_event)
            applied.user_ids.update(applied.memberships)
            self._memberships_changing(applied)
        return applied

    async def write_invite(self, event: Event, target_user_id: str,
                           invite_room_state: Sequence[dict[str, Any]]) -> Applied | None:
        async with self._db.transaction() as conn:
            stripped = [*invite_room_state, _stripped(event.pdu)]
            existing = await invites_t.select_invite(conn, event.event_id)
            if existing is not None:
                if invite_room_state:
                    await invites_t.update_invite_state(conn, event.event_id, json.dumps(stripped))
                return None
            position = await self._take_position(conn)
            await invites_t.insert_invite(conn, StoredInvite(
                event_id=event.event_id, room_id=event.room_id, target_user_id=target_user_id,
                room_version=event.room_version.identifier, event_json=event.to_json().decode(),
                invite_state_json=json.dumps(stripped), stream_pos=position, retired_pos=None,
                retired_membership=None, retired_by_event_id=None))
            applied = self._memberships_changing(
                Applied(position=position, room_id=event.room_id, user_ids={target_user_id}))
        return applied

    async def retire_invite(self, event_id: str, room_id: str, target_user_id: str, membership: str,
                            retired_by_event_id: str) -> Applied | None:
        async with self._db.transaction() as conn:
            existing = await invites_t.select_invite(conn, event_id)
            if existing is None or existing.retired_pos is not None:
                return None
            position = await self._take_position(conn)
            await invites_t.retire_invites(conn, room_id, target_user_id, position=position,
                                           membership=membership or "leave",
                                           retired_by_event_id=retired_by_event_id, event_id=event_id)
            applied = self._memberships_changing(
                Applied(position=position, room_id=room_id, user_ids={target_user_id}))
        return applied

    async def redact_event(self, redacted_event_id: str, redaction_event_id: str,
                           redacted: Event) -> Applied | None:
        """Replaces the stored JSON with the redacted form and remembers the redaction."""
        async with self._db.transaction() as conn:
            found = await events_t.select_events_by_ids(conn, [redacted_event_id, redaction_event_id])
            target = found.get(redacted_event_id)
            if target is None:
                return None
            # What was known about the event (replaces_state, prev_content) stays.
            unsigned: dict[str, Any] = json.loads(target.unsigned_json) if target.unsigned_json else {}
            redaction = found.get(redaction_event_id)
            unsigned["redacted_because"] = (
                {"pdu": json.loads(redaction.event_json), "event_id": redaction.event_id}
                if redaction is not None else {"event_id": redaction_event_id})
            await events_t.update_redacted(conn, redacted_event_id, redacted.to_json().decode(),
                                           json.dumps(unsigned))
            # The redaction stripped m.relates_to: the event leaves its parent's aggregations.
            await relations_t.delete_relation(conn, redacted_event_id)
            # Redacted text is no longer found by /search.
            await search_t.delete_entry(conn, target.stream_pos)
            position = await stream_t.current_position(conn)
        return Applied(position=position, room_id=target.room_id)

    # -- ephemeral and per-device streams ---------------------------------------------------

    async def write_receipt(self, room_id: str, receipt_type: str, user_id: str, thread_id: str,
                            event_id: str, ts: int) -> int | None:
        """Replaces the user's receipt of that type (and thread) in the room;
        the new receipt-stream position, or None when nothing changed (a
        replayed record, or a receipt for an earlier event than the one the
        user has a receipt for: as Synapse, receipts never move back, so an
        older receipt from a lagging device does not bring counts back)."""
        async with self._db.transaction() as conn:
            existing = await receipts_t.select_receipt(conn, room_id, receipt_type, user_id, thread_id)
            if existing is not None and existing.event_id == event_id and existing.ts == ts:
                return None
            if existing is not None and existing.event_id != event_id:
                found = await events_t.select_events_by_ids(conn, [existing.event_id, event_id])
                before, after = found.get(existing.event_id), found.get(event_id)
                if before is not None and after is not None and before.stream_pos >= after.stream_pos:
                    return None
            position = await self._take_stream_position(conn, "receipt")
            await conn.execute(self._db.upsert(
                receipts_t.receipts,
                {"room_id": room_id, "receipt_type": receipt_type, "user_id": user_id, "thread_id": thread_id,
                 "event_id": event_id, "ts": ts, "stream_pos": position},
                ["room_id", "receipt_type", "user_id", "thread_id"]))
        return position

    async def write_presence(self, user_id: str, presence: str, status_msg: str | None,
                             last_active_ts: int, *, keep_status: bool) -> tuple[int, bool] | None:
        """Sets the user's presence (``keep_status``: the status message stays
        as it was). Answers the new presence-stream position and whether the
        presence or status message changed (False: only ``last_active_ts``
        moved on), or None when nothing changed."""
        async with self._db.transaction() as conn:
            existing = await presence_t.select_presence(conn, user_id)
            if keep_status:
                status_msg = existing.status_msg if existing is not None else None
            changed = True
            if existing is not None:
                if last_active_ts < existing.last_active_ts:
                    return None  # older than what is stored (a replayed record)
                changed = (existing.presence, existing.status_msg) != (presence, status_msg)
                if not changed and existing.last_active_ts == last_active_ts:
                    return None
            position = await self._take_stream_position(conn, "presence")
            await conn.execute(self._db.upsert(
                presence_t.presence,
                {"user_id": user_id, "presence": presence, "status_msg": status_msg,
                 "last_active_ts": last_active_ts, "stream_pos": position},
                ["user_id"]))
        return position, changed

    async def presence_of(self, user_id: str) -> StoredPresence | None:
        async with self._db.connect() as conn:
            return await presence_t.select_presence(conn, user_id)

    async def write_account_data(self, user_id: str, room_id: str, data_type: str, content_json: str
                                 ) -> int | None:
        """Stores the new content of a piece of account data; the new
        account-data position, or None when it is what is stored already
        (a replayed change)."""
        # What is derived from DERIVED_ACCOUNT_DATA (the push evaluator's
        # kept rule sets and ignored users) is told by the caller, the
        # account-data consumer, once this returns (PushEvaluator.forget_user).
        async with self._db.transaction() as conn:
            if await account_data_t.select_content(conn, user_id, room_id, data_type) == content_json:
                return None
            position = await self._take_stream_position(conn, "account_data")
            await conn.execute(self._db.upsert(
                account_data_t.account_data,
                {"user_id": user_id, "room_id": room_id, "type": data_type, "content_json": content_json,
                 "stream_pos": position},
                ["user_id", "room_id", "type"]))
        return position

    async def write_device_list_change(self, user_id: str) -> int:
        """The user changed devices or keys: answers the new device-list position."""
        async with self._db.transaction() as conn:
            position = await self._take_stream_position(conn, "device_list")
            await conn.execute(self._db.upsert(device_lists_t.device_list_changes,
                                               {"user_id": user_id, "stream_pos": position}, ["user_id"]))
        return position

    async def write_notifications(self, rows: Sequence[StoredNotification]) -> None:
        """Stores push rule results; a row stored already is left as it is (a replay)."""
        if not rows:
            return
        async with self._db.transaction() as conn:
            await notifications_t.insert_notifications(conn, rows)

    async def write_to_device(self, *, user_id: str, device_id: str, message_id: str, sender: str,
                              event_type: str, content_json: str) -> int | None:
        """Puts a message in a device's inbox once per ``message_id``; the
        new to-device position, or None when it was there already."""
        async with self._db.transaction() as conn:
            if await to_device_t.message_exists(conn, user_id, device_id, message_id):
                return None
            position = await self._take_stream_position(conn, "to_device")
            await to_device_t.insert_message(
                conn, stream_pos=position, user_id=user_id, device_id=device_id, message_id=message_id,
                sender=sender, event_type=event_type, content_json=content_json)
        return position

    async def delete_to_device(self, user_id: str, device_id: str, *, upto: int) -> int:
        """Drops the messages the device acknowledged by syncing past ``upto``."""
        async with self._db.transaction() as conn:
            return await to_device_t.delete_messages(conn, user_id, device_id, upto=upto)

    # -- helpers ------------------------------------------------------------------------------

    async def _store_relation(self, conn: AsyncConnection, event: Event, position: int) -> None:
        found = relation_of(event.content)
        if found is None:
            return
        parent, rel_type = found
        await conn.execute(self._db.upsert(
            relations_t.relations,
            relations_t.insert_statement(relations_t.StoredRelation(
                event_id=event.event_id, room_id=event.room_id, relates_to=parent, rel_type=rel_type,
                type=event.type, sender=event.sender, depth=event.depth, stream_pos=position)),
            ["event_id"]))

    async def _store_state_only(self, conn: AsyncConnection, state_events: Iterable[Event]) -> None:
        pending = {e.event_id: e for e in state_events}
        if not pending:
            return
        known = await events_t.select_known_event_ids(conn, pending)
        new = [event for event_id, event in pending.items() if event_id not in known]
        if not new:
            return
        positions = await self._take_positions(conn, len(new))
        await events_t.insert_events(conn, [
            _stored(event, position, state_only=True, historical=False, history_visibility="shared")
            for event, position in zip(new, positions, strict=True)])

    async def _prev_unsigned(self, conn: AsyncConnection, previous_event_id: str) -> dict[str, Any]:
        found = await events_t.select_events_by_ids(conn, [previous_event_id])
        previous = found.get(previous_event_id)
        unsigned: dict[str, Any] = {"replaces_state": previous_event_id}
        if previous is not None:
            pdu = json.loads(previous.event_json)
            unsigned["prev_content"] = pdu.get("content", {})
            unsigned["prev_sender"] = pdu.get("sender")
        return unsigned

    async def _apply_state_delta(self, conn: AsyncConnection, room_id: str, position: int,
                                 adds: Sequence[str], removes: Sequence[str],
                                 known: dict[str, Event], *,
                                 current: Mapping[tuple[str, str], StateEntry | None] | None = None,
                                 removing: Sequence[StateEntry] | None = None,
                                 ) -> dict[str, str | None]:
        """Applies a state delta at ``position``; answers the memberships it
        changed (user -> new membership, None when the entry went away).
        ``current``: current entries of keys the caller read already;
        ``removing``: the current entries of ``removes``, read already."""
        changed: dict[str, str | None] = {}
        removed_keys: set[tuple[str, str]] = set()
        if removing is None:
            removing = await state_t.select_current_entries_by_event_ids(conn, room_id, list(removes))
        for entry in removing:
            if entry.event_id not in adds:
                await state_t.remove_entry(conn, entry, position)
                removed_keys.add((entry.type, entry.state_key))
                if entry.type == MEMBER:
                    changed[entry.state_key] = None
        missing = [event_id for event_id in adds if event_id not in known]
        stored = await events_t.select_events_by_ids(conn, missing)
        # A large delta (joining a big room) reads the room's state once and
        # inserts in one statement instead of two statements per entry.
        current_map: dict[tuple[str, str], StateEntry] | None = None
        if len(adds) > BULK_STATE_DELTA:
            current_map = {(e.type, e.state_key): e for e in await state_t.select_current_state(conn, room_id)}
        inserts: dict[tuple[str, str], StateEntry] = {}
        for event_id in adds:
            event_type: str
            state_key: str | None
            membership: str | None
            if event_id in known:
                event = known[event_id]
                event_type, state_key, membership = event.type, event.state_key, event.membership
            elif event_id in stored:
                row = stored[event_id]
                event_type, state_key = row.type, row.state_key
                membership = _membership_of(row)
            else:
                # The room server named state it did not send: nothing to serve it from.
                continue
            if state_key is None:
                continue
            key = (event_type, state_key)
            current_entry: StateEntry | None
            if key in inserts:
                # Two entries for one key in a delta: the later one wins; the
                # earlier was never in force.
                current_entry = None
            elif current_map is not None:
                current_entry = current_map.get(key)
            elif key in removed_keys:
                current_entry = None  # deleted just above
            elif current is not None and key in current:
                current_entry = current[key]
            else:
                current_entry = await state_t.select_current_entry(conn, room_id, event_type, state_key)
            if current_entry is not None:
                if current_entry.event_id == event_id:
                    continue
                await state_t.remove_entry(conn, current_entry, position)
            entry = StateEntry(room_id=room_id, type=event_type, state_key=state_key, event_id=event_id,
                               membership=membership if event_type == MEMBER else None, added_pos=position)
            inserts[key] = entry
            if event_type == MEMBER:
                changed[state_key] = membership
        await state_t.insert_entries(conn, list(inserts.values()))
        return changed

    async def _track_invite(self, conn: AsyncConnection, event: Event, position: int,
                            local_server: str) -> None:
        """Keeps the invites table right from the room's own membership events:
        a local user's invite appears there even if no invite entry was
        written, and any change of membership ends a pending invite."""
        target = event.state_key or ""
        if event.membership == "invite":
            if not target.endswith(":" + local_server):
                return
            if await invites_t.select_invite(conn, event.event_id) is not None:
                return
            state = await state_t.select_state_at(
                conn, event.room_id, position, types=[(t, "") for t in INVITE_STATE_TYPES]
                + [(MEMBER, event.sender)])
            found = await events_t.select_events_by_ids(conn, [s.event_id for s in state])
            stripped = [_stripped(json.loads(e.event_json)) for e in found.values()]
            stripped.append(_stripped(event.pdu))
            await invites_t.insert_invite(conn, StoredInvite(
                event_id=event.event_id, room_id=event.room_id, target_user_id=target,
                room_version=event.room_version.identifier, event_json=event.to_json().decode(),
                invite_state_json=json.dumps(stripped), stream_pos=position, retired_pos=None,
                retired_membership=None, retired_by_event_id=None))
        else:
            await invites_t.retire_invites(conn, event.room_id, target, position=position,
                                           membership=event.membership or "leave",
                                           retired_by_event_id=event.event_id)

    async def _set_room_position(self, conn: AsyncConnection, room_id: str, event_id: str,
                                 room_stream_position: int) -> None:
        await positions_t.upsert_position(conn, room_id, event_id, room_stream_position)

    # -- filters ------------------------------------------------------------------------------

    async def store_filter(self, user_id: str, filter_json: str) -> int:
        async with self._db.transaction() as conn:
            return await filters_t.insert_filter(conn, user_id, filter_json)

    async def get_filter(self, user_id: str, filter_id: int) -> str | None:
        # A stored filter never changes: the ones clients sync with are kept
        # (a /sync with a filter ID then reads nothing for it).
        key = (user_id, filter_id)
        found = self._filters.get(key)
        if found is not None:
            self._filters.move_to_end(key)
            return found
        async with self._db.connect() as conn:
            found = await filters_t.select_filter(conn, user_id, filter_id)
        if found is not None:
            self._filters[key] = found
            while len(self._filters) > FILTERS_KEPT:
                self._filters.popitem(last=False)
        return found


async def _index_event(conn: AsyncConnection, event: Event, position: int, *, current: bool) -> None:
    """Keeps the search index and the user directory up to date with a timeline event."""
    indexed = search_t.indexed_text(event)
    if indexed is not None:
        await search_t.insert_entry(conn, stream_pos=position, room_id=event.room_id,
                                    event_id=event.event_id, key=indexed[0], value=indexed[1])
    if current:
        await _update_directory(conn, event)


async def _update_directory(conn: AsyncConnection, event: Event) -> None:
    """The user directory follows join events (profiles) and join rules (public rooms)."""
    if event.state_key is None:
        return
    content = event.content
    if event.type == MEMBER and content.get("membership") == "join":
        name, avatar = content.get("displayname"), content.get("avatar_url")
        await directory_t.set_profile(conn, event.state_key, name if isinstance(name, str) else None,
                                      avatar if isinstance(avatar, str) else None)
    elif event.type == "m.room.join_rules" and event.state_key == "":
        await directory_t.set_room_public(conn, event.room_id, content.get("join_rule") == "public")


def _membership_of(row: StoredEvent) -> str | None:
    if row.type != MEMBER:
        return None
    content = json.loads(row.event_json).get("content", {})
    value = content.get("membership") if isinstance(content, dict) else None
    return value if isinstance(value, str) else None


class Reader:
    """Read queries on one connection (one request)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def current_position(self) -> int:
        return await stream_t.current_position(self.conn)

    async def user_memberships(self, user_id: str, memberships: Sequence[str], *,
                               added_after: int | None = None) -> list[StateEntry]:
        return await state_t.select_user_memberships(self.conn, user_id, memberships,
                                                     added_after=added_after)

    async def memberships_in_rooms(self, user_id: str, room_ids: Sequence[str]) -> dict[str, str | None]:
        """The user's current membership in each of the rooms that has one."""
        return await state_t.select_memberships_in_rooms(self.conn, user_id, room_ids)

    async def membership_history(self, user_id: str, room_ids: Sequence[str] | None = None
                                 ) -> list[tuple[str, str | None, int, int | None]]:
        return await state_t.select_membership_history(self.conn, user_id, room_ids)

    async def room_members(self, room_id: str, memberships: Sequence[str]) -> list[StateEntry]:
        return await state_t.select_room_members(self.conn, room_id, memberships)

    async def local_members(self, room_id: str, server_name: str) -> set[str]:
        """The room's joined and invited users of this server."""
        members = await state_t.select_room_members(self.conn, room_id, ["join", "invite"])
        return {m.state_key for m in members if m.state_key.endswith(":" + server_name)}

    async def state_at(self, room_id: str, position: int, *, added_after: int | None = None,
                       types: Iterable[tuple[str, str | None]] | None = None,
                       members: Iterable[str] | None = None) -> list[StateEntry]:
        return await state_t.select_state_at(self.conn, room_id, position, added_after=added_after,
                                             types=types, members=members)

    async def member_counts(self, room_id: str) -> dict[str, int]:
        return await state_t.select_member_counts(self.conn, room_id)

    async def state_at_in_rooms(self, positions: Mapping[str, int], *,
                                members: Mapping[str, Set[str]] | None = None) -> dict[str, list[StateEntry]]:
        """``state_at`` of many rooms at once, each at its own position."""
        return await state_t.select_state_at_in_rooms(self.conn, positions, members=members)

    async def member_counts_in_rooms(self, room_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        return await state_t.select_member_counts_in_rooms(self.conn, room_ids)

    async def current_entries_in_rooms(self, room_ids: Sequence[str], keys: Sequence[tuple[str, str]]
                                       ) -> list[StateEntry]:
        return await state_t.select_current_entries_in_rooms(self.conn, room_ids, keys)

    async def heroes_in_rooms(self, room_ids: Sequence[str], exclude_user: str, limit: int
                              ) -> dict[str, tuple[list[str], list[str]]]:
        """Per room: the heroes among joined or invited members, and among those who left or were banned."""
        return await state_t.select_heroes_in_rooms(self.conn, room_ids, exclude_user, limit)

    async def heroes(self, room_id: str, exclude_user: str, limit: int,
                     memberships: Sequence[str] = ("join", "invite")) -> list[str]:
        return await state_t.select_heroes(self.conn, room_id, exclude_user, limit, memberships)

    async def current_state_entry(self, room_id: str, event_type: str, state_key: str
                                  ) -> StateEntry | None:
        return await state_t.select_current_entry(self.conn, room_id, event_type, state_key)

    async def events_by_ids(self, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
        return await events_t.select_events_by_ids(self.conn, event_ids)

    async def recent_events(self, room_id: str, *, after: int, upto: int, limit: int,
                            event_filter: EventFilter | None = None) -> list[StoredEvent]:
        return await events_t.select_recent_events(self.conn, room_id, after=after, upto=upto,
                                                   limit=limit, event_filter=event_filter)

    async def joined_rooms_with_events(self, user_id: str, *, after: int, upto: int) -> set[str]:
        """The rooms the user is joined to now that have timeline events in
        ``(after, upto]``: one query walking only the new events."""
        return set(await self.joined_rooms_with_events_since(user_id, after=after, upto=upto))

    async def joined_rooms_with_events_since(self, user_id: str, *, after: int, upto: int) -> dict[str, int]:
        """``joined_rooms_with_events``, each with the position of the join
        in force (at or before ``after``: joined throughout)."""
        e = events_t.events.c
        m = state_t.current_room_state.c
        stmt = select(e.room_id, m.added_pos).distinct().select_from(events_t.events.join(
            state_t.current_room_state,
            and_(m.room_id == e.room_id, m.type == MEMBER, m.state_key == user_id, m.membership == "join"),
        )).where(e.stream_pos > after, e.stream_pos <= upto, e.state_only == false(),
                 e.historical == false())
        return {str(row[0]): int(row[1]) for row in await self.conn.execute(stmt)}

    async def joined_rooms_news(self, user_id: str, *, after: int, upto: int, cap: int
                                ) -> tuple[dict[str, int], dict[str, list[StoredEvent]]] | None:
        """``joined_rooms_with_events_since`` and every one of those rooms'
        timeline events in ``(after, upto]`` (oldest first), in one
        statement; None when there are more than ``cap`` such events."""
        found = await self.joined_rooms_news_and_counts(user_id, after=after, upto=upto, cap=cap, counts=False)
        return None if found is None else (found[0], found[1])

    async def joined_rooms_news_and_counts(
            self, user_id: str, *, after: int, upto: int, cap: int, counts: bool = True,
    ) -> tuple[dict[str, int], dict[str, list[StoredEvent]], list[tuple[str, str, int, int]] | None] | None:
        """``joined_rooms_news`` and, on PostgreSQL (a round trip fewer;
        ``counts``), the user's unread counts in those rooms (as
        ``unread_counts``) read by the same statement; None for them on
        SQLite, where a second statement costs no round trip."""
        params = {"b_user_id": user_id, "b_after": after, "b_upto": upto, "b_limit": cap + 1}
        joined: dict[str, int] = {}
        found: dict[str, list[StoredEvent]] = {}
        if not (counts and self.conn.dialect.name == "postgresql"):
            rows = list(await self.conn.execute(_JOINED_ROOMS_NEWS, params))
            if len(rows) > cap:
                return None
            for row in reversed(rows):
                stored = StoredEvent.from_row(row)
                joined[stored.room_id] = int(row._mapping["join_pos"])
                found.setdefault(stored.room_id, []).append(stored)
            return joined, found, None
        # (kind, the 17 event columns, join_pos, count's thread, count, highlights)
        values = await _JOINED_ROOMS_NEWS_AND_COUNTS.rows(self.conn, params)
        unread = [(str(v[2]), str(v[19]), int(v[20]), int(v[21] or 0)) for v in values if v[0]]
        news = sorted((v for v in values if not v[0]), key=lambda v: int(v[1]))
        if len(news) > cap:
            return None
        for v in news:
            stored = events_t.stored_event_of(v[1:18])
            joined[stored.room_id] = int(v[18])
            found.setdefault(stored.room_id, []).append(stored)
        return joined, found, unread

    async def recent_events_in_rooms(self, room_ids: Sequence[str], *, after: int, upto: int, limit: int,
                                     event_filter: EventFilter | None = None) -> dict[str, list[StoredEvent]]:
        return await events_t.select_recent_events_in_rooms(self.conn, room_ids, after=after, upto=upto,
                                                            limit=limit, event_filter=event_filter)

    async def topological_page(self, room_id: str, *, before: tuple[int, int] | None,
                               at_or_after: tuple[int, int] | None, backwards: bool, limit: int,
                               event_filter: EventFilter | None) -> list[StoredEvent]:
        return await events_t.select_topological_page(
            self.conn, room_id, before=before, at_or_after=at_or_after, backwards=backwards,
            limit=limit, event_filter=event_filter)

    async def latest_position_in_room(self, room_id: str, upto: int) -> tuple[int, int] | None:
        return await events_t.select_latest_position_in_room(self.conn, room_id, upto)

    async def latest_history_visibility(self, room_id: str) -> str | None:
        t = events_t.events.c
        row = (await self.conn.execute(
            select(t.history_visibility).where(t.room_id == room_id, t.state_only == false())
            .order_by(t.stream_pos.desc()).limit(1))).first()
        return None if row is None else str(row[0])

    async def visible_receipts(self, user_id: str, *, after: int, upto: int,
                               room_ids: Sequence[str] | None = None) -> list[StoredReceipt]:
        return await receipts_t.select_visible_receipts(self.conn, user_id, after=after, upto=upto,
                                                        room_ids=room_ids)

    async def visible_presence(self, user_id: str, *, after: int, upto: int) -> list[StoredPresence]:
        return await presence_t.select_visible_presence(self.conn, user_id, after=after, upto=upto)

    async def users_sharing_rooms(self, user_id: str) -> set[str]:
        return await presence_t.select_users_sharing_rooms(self.conn, user_id)

    async def shares_room(self, user_id: str, other_user_id: str) -> bool:
        """Whether the two users are joined to a room in common."""
        return await presence_t.select_shares_room(self.conn, user_id, other_user_id)

    async def device_list_changes(self, user_id: str, *, after: int, upto: int) -> set[str]:
        return await device_lists_t.select_changed_users(self.conn, user_id, after=after, upto=upto)

    async def account_data_changes(self, user_id: str, *, after: int, upto: int) -> list[StoredAccountData]:
        return await account_data_t.select_changes(self.conn, user_id, after=after, upto=upto)

    async def known_local_users(self, server_name: str) -> list[str]:
        return await account_data_t.select_known_local_users(self.conn, server_name)

    async def ignored_users(self, user_id: str) -> set[str]:
        """The users in the user's m.ignored_user_list."""
        found = await account_data_t.select_content(self.conn, user_id, "", "m.ignored_user_list")
        try:
            ignored = json.loads(found).get("ignored_users") if found else None
        except (ValueError, AttributeError):
            return set()
        return {u for u in ignored if isinstance(u, str)} if isinstance(ignored, dict) else set()

    async def to_device_messages(self, user_id: str, device_id: str, *, upto: int,
                                 limit: int) -> list[StoredToDevice]:
        return await to_device_t.select_messages(self.conn, user_id, device_id, upto=upto, limit=limit)

    async def active_invites(self, user_id: str, *, after: int, upto: int) -> list[StoredInvite]:
        return await invites_t.select_active_invites(self.conn, user_id, after=after, upto=upto)

    async def retired_invites(self, user_id: str, *, after: int, upto: int) -> list[StoredInvite]:
        return await invites_t.select_retired_invites(self.conn, user_id, after=after, upto=upto)

    # -- search and the user directory -------------------------------------------------------

    async def search_events(self, term: str, *, room_ids: Sequence[str], keys: Sequence[str],
                            order_by_rank: bool, limit: int, offset: int = 0,
                            before_pos: int | None = None) -> list[search_t.SearchHit]:
        return await search_t.search(self.conn, term, room_ids=room_ids, keys=keys,
                                     order_by_rank=order_by_rank, limit=limit, offset=offset,
                                     before_pos=before_pos)

    async def search_count(self, term: str, *, room_ids: Sequence[str], keys: Sequence[str]) -> int:
        return await search_t.count(self.conn, term, room_ids=room_ids, keys=keys)

    async def events_at_positions(self, positions: Sequence[int]) -> dict[int, StoredEvent]:
        if not positions:
            return {}
        result = await self.conn.execute(
            select(events_t.events).where(events_t.events.c.stream_pos.in_(list(positions))))
        return {stored.stream_pos: stored for stored in map(StoredEvent.from_row, result)}

    async def search_user_directory(self, searcher: str, words: list[str], limit: int
                                    ) -> list[directory_t.DirectoryEntry]:
        return await directory_t.search_users(self.conn, searcher, words, limit)

    # -- relations and timestamps ------------------------------------------------------------

    async def relation_children(self, parent_ids: Iterable[str], *,
                                rel_types: Sequence[str] | None = None) -> list[StoredRelation]:
        return await relations_t.select_children(self.conn, parent_ids, rel_types=rel_types)

    async def relation_child_ids(self, parent_ids: Iterable[str]) -> list[str]:
        return await relations_t.select_child_ids(self.conn, parent_ids)

    async def relations_page(self, *, room_id: str, parent_ids: Sequence[str], rel_type: str | None,
                             event_type: str | None, before: tuple[int, int] | None,
                             at_or_after: tuple[int, int] | None, backwards: bool, limit: int,
                             event_ids: Sequence[str] | None = None) -> list[StoredRelation]:
        return await relations_t.select_page(
            self.conn, room_id=room_id, parent_ids=parent_ids, rel_type=rel_type, event_type=event_type,
            before=before, at_or_after=at_or_after, backwards=backwards, limit=limit, event_ids=event_ids)

    async def threads(self, room_id: str, *, before_pos: int | None, limit: int,
                      participant: str | None = None) -> list[tuple[str, int]]:
        return await relations_t.select_threads(self.conn, room_id, before_pos=before_pos, limit=limit,
                                                participant=participant)

    async def read_up_to(self, user_id: str, room_ids: Sequence[str]) -> dict[str, ReadUpTo]:
        return await notifications_t.select_read_up_to(self.conn, user_id, room_ids)

    async def unread_counts(self, user_id: str, room_ids: Sequence[str]) -> list[tuple[str, str, int, int]]:
        return await notifications_t.select_unread_counts(self.conn, user_id, room_ids)

    async def notifications_page(self, user_id: str, *, before: int | None, limit: int,
                                 only_highlight: bool) -> list[StoredNotification]:
        return await notifications_t.select_page(self.conn, user_id, before=before, limit=limit,
                                                 only_highlight=only_highlight)

    async def local_joined_members(self, room_id: str, server_name: str) -> dict[str, str]:
        return await notifications_t.select_local_joined_members(self.conn, room_id, server_name)

    async def global_account_data(self, user_ids: Sequence[str], data_type: str) -> dict[str, str]:
        return await notifications_t.select_global_account_data(self.conn, user_ids, data_type)

    async def events_by_timestamp(self, room_id: str, ts: int, *, backwards: bool,
                                  limit: int) -> list[StoredEvent]:
        return await events_t.select_by_timestamp(self.conn, room_id, ts, backwards=backwards, limit=limit)
