"""syncapi_events: every event the sync API serves, by stream position.

Timeline events are ordered by ``stream_pos`` for /sync and by ``(depth,
stream_pos)`` for /messages. State events known only through the state
(``state_only``) and backfilled events (``historical``) are stored here too,
but never appear in a /sync timeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    CompoundSelect,
    Index,
    Select,
    Subquery,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    false,
    not_,
    or_,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.selectable import TextualSelect

from common.prebuilt import PrebuiltStatement
from syncapi.filters import EventFilter, like_pattern
from syncapi.storage.tables import metadata

# Rooms whose recent events one statement reads (a compound SELECT of one
# LIMITed SELECT per room; SQLite allows 500 terms).
ROOMS_PER_STATEMENT = 100
# The same with a timeline filter, whose statements SQLAlchemy builds and
# compiles, and keeps in its compiled cache (per size and filter shape): the
# compound for 100 rooms held ~5 MB there. These sizes keep all of a filter
# shape's under 1 MB; a chunk is padded up to the next one.
_FILTERED_SIZES = (1, 2, 4, 8)

events = Table(
    "syncapi_events", metadata,
    Column("stream_pos", BigInteger, primary_key=True, autoincrement=False),
    Column("room_id", Text, nullable=False),
    Column("event_id", Text, nullable=False, unique=True),
    Column("type", Text, nullable=False),
    Column("sender", Text, nullable=False),
    Column("state_key", Text),
    Column("depth", BigInteger, nullable=False),
    Column("room_version", Text, nullable=False),
    Column("event_json", Text, nullable=False),
    Column("unsigned_json", Text),
    Column("history_visibility", Text, nullable=False),
    Column("historical", Boolean, nullable=False),
    Column("state_only", Boolean, nullable=False),
    Column("contains_url", Boolean, nullable=False),
    Column("txn_device_id", Text),
    Column("txn_id", Text),
    Column("origin_server_ts", BigInteger),
    Index("syncapi_events_room_stream", "room_id", "stream_pos"),
    Index("syncapi_events_room_topology", "room_id", "depth", "stream_pos"),
    Index("syncapi_events_room_ts", "room_id", "origin_server_ts"),
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    stream_pos: int
    room_id: str
    event_id: str
    type: str
    sender: str
    state_key: str | None
    depth: int
    room_version: str
    event_json: str
    unsigned_json: str | None
    history_visibility: str
    historical: bool
    state_only: bool
    contains_url: bool
    txn_device_id: str | None
    txn_id: str | None
    origin_server_ts: int | None = None

    @classmethod
    def from_row(cls, row: Row[tuple[object, ...]]) -> StoredEvent:
        m = row._mapping
        return cls(
            stream_pos=int(m["stream_pos"]), room_id=m["room_id"], event_id=m["event_id"],
            type=m["type"], sender=m["sender"], state_key=m["state_key"], depth=int(m["depth"]),
            room_version=m["room_version"], event_json=m["event_json"],
            unsigned_json=m["unsigned_json"], history_visibility=m["history_visibility"],
            historical=bool(m["historical"]), state_only=bool(m["state_only"]),
            contains_url=bool(m["contains_url"]), txn_device_id=m["txn_device_id"],
            txn_id=m["txn_id"], origin_server_ts=m["origin_server_ts"],
        )


def stored_event_of(values: Sequence[Any]) -> StoredEvent:
    """A StoredEvent from the table's columns in their order, as a driver
    gives them (a prebuilt statement's row)."""
    return StoredEvent(
        stream_pos=int(values[0]), room_id=values[1], event_id=values[2], type=values[3], sender=values[4],
        state_key=values[5], depth=int(values[6]), room_version=values[7], event_json=values[8],
        unsigned_json=values[9], history_visibility=values[10], historical=bool(values[11]),
        state_only=bool(values[12]), contains_url=bool(values[13]), txn_device_id=values[14], txn_id=values[15],
        origin_server_ts=values[16],
    )


def _row(event: StoredEvent) -> dict[str, object]:
    return {
        "stream_pos": event.stream_pos, "room_id": event.room_id, "event_id": event.event_id,
        "type": event.type, "sender": event.sender, "state_key": event.state_key, "depth": event.depth,
        "room_version": event.room_version, "event_json": event.event_json,
        "unsigned_json": event.unsigned_json, "history_visibility": event.history_visibility,
        "historical": event.historical, "state_only": event.state_only,
        "contains_url": event.contains_url, "txn_device_id": event.txn_device_id, "txn_id": event.txn_id,
        "origin_server_ts": event.origin_server_ts,
    }


# Built once and run without SQLAlchemy's per-statement machinery
# (common/prebuilt.py): every event written one by one (state events) runs it.
_INSERT_EVENT = PrebuiltStatement(events.insert(), tuple(events.c.keys()))


async def insert_event(conn: AsyncConnection, event: StoredEvent) -> None:
    row = _row(event)
    # The driver is given the values as they are: asyncpg wants real booleans.
    for flag in ("historical", "state_only", "contains_url"):
        row[flag] = bool(row[flag])
    await _INSERT_EVENT.execute(conn, row)


async def insert_events(conn: AsyncConnection, stored: Sequence[StoredEvent]) -> None:
    """Many events in one executemany (a join to a large room brings its whole state)."""
    if stored:
        await conn.execute(events.insert(), [_row(event) for event in stored])


async def delete_event(conn: AsyncConnection, event_id: str) -> None:
    await conn.execute(delete(events).where(events.c.event_id == event_id))


async def select_known_event_ids(conn: AsyncConnection, event_ids: Iterable[str]) -> set[str]:
    ids = list(set(event_ids))
    if not ids:
        return set()
    result = await conn.execute(select(events.c.event_id).where(events.c.event_id.in_(ids)))
    return {row[0] for row in result}


# Built once: every output entry and many reads run it.
_SELECT_EVENTS_BY_IDS = select(events).where(events.c.event_id.in_(bindparam("b_ids", expanding=True)))
# Run without SQLAlchemy's per-statement machinery (common/prebuilt.py): a
# state change reads the entry it replaces, /sync the events it serves.
_SELECT_EVENTS_BY_IDS_PREBUILT = PrebuiltStatement(_SELECT_EVENTS_BY_IDS)


async def select_events_by_ids(conn: AsyncConnection, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
    ids = list(set(event_ids))
    found: dict[str, StoredEvent] = {}
    # Chunked so a room with a very large state stays under parameter limits.
    for start in range(0, len(ids), 500):
        for row in await _SELECT_EVENTS_BY_IDS_PREBUILT.rows(conn, {"b_ids": ids[start:start + 500]}):
            stored = stored_event_of(row)
            found[stored.event_id] = stored
    return found


async def update_redacted(conn: AsyncConnection, event_id: str, event_json: str,
                          unsigned_json: str | None) -> bool:
    result = await conn.execute(
        update(events).where(events.c.event_id == event_id)
        .values(event_json=event_json, unsigned_json=unsigned_json, contains_url=False))
    return bool(getattr(result, "rowcount", 0))


def filter_clause(event_filter: EventFilter) -> ColumnElement[bool] | None:
    """The type, sender and URL parts of a RoomEventFilter as a WHERE clause."""
    clauses: list[ColumnElement[bool]] = []
    if event_filter.types is not None:
        if not event_filter.types:
            return false()
        clauses.append(or_(*(_type_clause(p) for p in event_filter.types)))
    if event_filter.not_types:
        clauses.append(not_(or_(*(_type_clause(p) for p in event_filter.not_types))))
    if event_filter.senders is not None:
        clauses.append(events.c.sender.in_(list(event_filter.senders)))
    if event_filter.not_senders:
        clauses.append(events.c.sender.not_in(list(event_filter.not_senders)))
    if event_filter.contains_url is not None:
        clauses.append(events.c.contains_url == event_filter.contains_url)
    return and_(*clauses) if clauses else None


def _type_clause(pattern: str) -> ColumnElement[bool]:
    if "*" in pattern:
        return events.c.type.like(like_pattern(pattern), escape="\\")
    return events.c.type == pattern


def _timeline(stmt: Select[tuple[object, ...]], event_filter: EventFilter | None
              ) -> Select[tuple[object, ...]]:
    stmt = stmt.where(events.c.state_only == false(), events.c.historical == false())
    if event_filter is not None:
        clause = filter_clause(event_filter)
        if clause is not None:
            stmt = stmt.where(clause)
    return stmt


async def select_recent_events(
    conn: AsyncConnection, room_id: str, *, after: int, upto: int, limit: int,
    event_filter: EventFilter | None = None,
) -> list[StoredEvent]:
    """The last ``limit`` timeline events of a room with ``after < stream_pos <=
    upto``, oldest first."""
    stmt = _timeline(select(events).where(
        events.c.room_id == room_id, events.c.stream_pos > after, events.c.stream_pos <= upto,
    ), event_filter).order_by(events.c.stream_pos.desc()).limit(limit)
    rows = [StoredEvent.from_row(row) for row in await conn.execute(stmt)]
    rows.reverse()
    return rows


async def select_recent_events_in_rooms(
    conn: AsyncConnection, room_ids: Sequence[str], *, after: int, upto: int, limit: int,
    event_filter: EventFilter | None = None,
) -> dict[str, list[StoredEvent]]:
    """``select_recent_events`` for several rooms in one statement per
    ``ROOMS_PER_STATEMENT`` rooms: one LIMITed index walk per room, so a room
    far behind costs its ``limit`` rows, not all its events since ``after``."""
    found: dict[str, list[StoredEvent]] = {room_id: [] for room_id in room_ids}
    ids = list(found)
    unfiltered = event_filter is None or filter_clause(event_filter) is None
    for start in range(0, len(ids), ROOMS_PER_STATEMENT):
        chunk = ids[start:start + ROOMS_PER_STATEMENT]
        if unfiltered:
            # The usual case: a statement built once per size, the rooms as parameters.
            size = next(size for size in _RECENT_SIZES if size >= len(chunk))
            params: dict[str, object] = {f"b_room_{i}": room_id for i, room_id in enumerate(chunk)}
            # Padding: a room ID no room has.
            params.update({f"b_room_{i}": "" for i in range(len(chunk), size)})
            params.update(b_after=after, b_upto=upto, b_limit=limit)
            result = await conn.execute(_recent_in_rooms_statement(size), params)
            for row in result:
                stored = StoredEvent.from_row(row)
                found[stored.room_id].append(stored)
            continue
        for part in range(0, len(chunk), _FILTERED_SIZES[-1]):
            rooms = chunk[part:part + _FILTERED_SIZES[-1]]
            size = next(size for size in _FILTERED_SIZES if size >= len(rooms))
            # Padding: a room ID no room has.
            padded = [*rooms, *([""] * (size - len(rooms)))]
            result = await conn.execute(_union_of_rooms([_recent_in_room(room_id, after, upto, limit, event_filter)
                                                         for room_id in padded]))
            for row in result:
                stored = StoredEvent.from_row(row)
                found[stored.room_id].append(stored)
    for rows in found.values():
        rows.sort(key=lambda e: e.stream_pos)
    return found


# The room counts the built-once statements of select_recent_events_in_rooms cover.
_RECENT_SIZES = (1, 2, 4, 8, 16, 32, 64, ROOMS_PER_STATEMENT)
_RECENT_STATEMENTS: dict[int, TextualSelect] = {}


def _recent_in_room(room_id: object, after: object, upto: object, limit: object,
                    event_filter: EventFilter | None) -> Subquery:
    return _timeline(select(events).where(
        events.c.room_id == room_id, events.c.stream_pos > after, events.c.stream_pos <= upto,
    ), event_filter).order_by(events.c.stream_pos.desc()).limit(limit).subquery()  # type: ignore[arg-type]


def _union_of_rooms(per_room: list[Subquery]) -> Select[tuple[object, ...]] | CompoundSelect[tuple[object, ...]]:
    return select(per_room[0]) if len(per_room) == 1 else union_all(*(select(sub) for sub in per_room))


def _recent_in_rooms_statement(size: int) -> TextualSelect:
    """The unfiltered recent-events statement for ``size`` rooms (bound as
    ``b_room_<i>``, ``b_after``, ``b_upto``, ``b_limit``), built once. Its SQL
    is written here rather than composed: SQLAlchemy took half a second to
    compile the compound of a hundred SELECTs (an initial sync's first
    request after a start), SQLite a few milliseconds to run it."""
    built = _RECENT_STATEMENTS.get(size)
    if built is None:
        columns = ", ".join(c.name for c in events.c)
        per_room = [
            f"SELECT * FROM (SELECT {columns} FROM {events.name} WHERE room_id = :b_room_{i}"
            " AND stream_pos > :b_after AND stream_pos <= :b_upto AND NOT state_only AND NOT historical"
            f" ORDER BY stream_pos DESC LIMIT :b_limit) AS recent_{i}"
            for i in range(size)]
        built = text(" UNION ALL ".join(per_room)).columns(*events.c)
        _RECENT_STATEMENTS[size] = built
    return built


async def select_topological_page(
    conn: AsyncConnection, room_id: str, *, before: tuple[int, int] | None = None,
    at_or_after: tuple[int, int] | None = None, backwards: bool, limit: int,
    event_filter: EventFilter | None = None,
) -> list[StoredEvent]:
    """A page of a room's events in topological order, for /messages.

    ``before``/``at_or_after`` bound ``(depth, stream_pos)``; backwards pages
    come newest first. Historical events are included (they are the room's
    past); state-only events are not (they were never in the timeline).
    """
    position = tuple_(events.c.depth, events.c.stream_pos)
    stmt = select(events).where(events.c.room_id == room_id, events.c.state_only == false())
    if before is not None:
        stmt = stmt.where(position < tuple_(*before))
    if at_or_after is not None:
        stmt = stmt.where(position >= tuple_(*at_or_after))
    if event_filter is not None:
        clause = filter_clause(event_filter)
        if clause is not None:
            stmt = stmt.where(clause)
    if backwards:
        stmt = stmt.order_by(events.c.depth.desc(), events.c.stream_pos.desc())
    else:
        stmt = stmt.order_by(events.c.depth.asc(), events.c.stream_pos.asc())
    return [StoredEvent.from_row(row) for row in await conn.execute(stmt.limit(limit))]


async def select_latest_position_in_room(conn: AsyncConnection, room_id: str, upto: int
                                         ) -> tuple[int, int] | None:
    """(depth, stream_pos) of the topologically last event of the room among
    those stored at or before stream position ``upto`` (state-only ones aside)."""
    stmt = select(events.c.depth, events.c.stream_pos).where(
        events.c.room_id == room_id, events.c.stream_pos <= upto, events.c.state_only == false(),
    ).order_by(events.c.depth.desc(), events.c.stream_pos.desc()).limit(1)
    row = (await conn.execute(stmt)).first()
    return None if row is None else (int(row[0]), int(row[1]))


async def select_by_timestamp(conn: AsyncConnection, room_id: str, ts: int, *, backwards: bool,
                              limit: int) -> list[StoredEvent]:
    """Timeline events of a room nearest ``ts``: at or after it oldest first
    (``backwards``: at or before it, newest first)."""
    stmt = select(events).where(events.c.room_id == room_id, events.c.state_only == false(),
                                events.c.origin_server_ts.is_not(None))
    if backwards:
        stmt = stmt.where(events.c.origin_server_ts <= ts).order_by(
            events.c.origin_server_ts.desc(), events.c.stream_pos.desc())
    else:
        stmt = stmt.where(events.c.origin_server_ts >= ts).order_by(
            events.c.origin_server_ts.asc(), events.c.stream_pos.asc())
    return [StoredEvent.from_row(row) for row in await conn.execute(stmt.limit(limit))]
