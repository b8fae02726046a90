"""syncapi_current_room_state and syncapi_state_history: each room's state
now, and the entries it replaced, each with the stream positions between
which it was in force.

The state of a room at stream position P is the current entries added at or
before P plus the history entries with ``added_pos <= P < removed_pos``: one
indexed query, no copy of the state per event. The member rows double as
the membership tables (joined users per room, a user's rooms).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Index,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from common.prebuilt import PrebuiltStatement
from syncapi.storage.tables import metadata
from syncapi.storage.tables.events import events

MEMBER = "m.room.member"

current_room_state = Table(
    "syncapi_current_room_state", metadata,
    Column("room_id", Text, primary_key=True),
    Column("type", Text, primary_key=True),
    Column("state_key", Text, primary_key=True),
    Column("event_id", Text, nullable=False),
    Column("membership", Text),
    Column("added_pos", BigInteger, nullable=False),
    Index("syncapi_current_room_state_user", "state_key", "type", "membership"),
)

state_history = Table(
    "syncapi_state_history", metadata,
    Column("room_id", Text, primary_key=True),
    Column("type", Text, primary_key=True),
    Column("state_key", Text, primary_key=True),
    Column("event_id", Text, nullable=False),
    Column("membership", Text),
    Column("added_pos", BigInteger, primary_key=True),
    Column("removed_pos", BigInteger, nullable=False),
    Index("syncapi_state_history_removed", "room_id", "removed_pos"),
    Index("syncapi_state_history_user", "state_key", "type"),
)


@dataclass(frozen=True, slots=True)
class StateEntry:
    room_id: str
    type: str
    state_key: str
    event_id: str
    membership: str | None
    added_pos: int


# Built once and run without SQLAlchemy's per-statement machinery
# (common/prebuilt.py): every state event (a join, a leave) runs these.
_ENTRY_KEY = (current_room_state.c.room_id == bindparam("b_room_id"),
              current_room_state.c.type == bindparam("b_type"),
              current_room_state.c.state_key == bindparam("b_state_key"))
_CURRENT_ENTRY = PrebuiltStatement(select(current_room_state).where(*_ENTRY_KEY))
_DELETE_CURRENT_ENTRY = PrebuiltStatement(delete(current_room_state).where(*_ENTRY_KEY))
_CURRENT_ENTRIES_BY_EVENT_IDS = PrebuiltStatement(
    select(current_room_state).select_from(current_room_state.join(events, and_(
        current_room_state.c.room_id == events.c.room_id, current_room_state.c.type == events.c.type,
        current_room_state.c.state_key == events.c.state_key, current_room_state.c.event_id == events.c.event_id)))
    .where(events.c.event_id.in_(bindparam("b_ids", expanding=True)), events.c.room_id == bindparam("b_room_id")))
_ENTRY_COLUMNS = ("room_id", "type", "state_key", "event_id", "membership", "added_pos")
_INSERT_CURRENT_ENTRY = PrebuiltStatement(current_room_state.insert(), _ENTRY_COLUMNS)
_INSERT_HISTORY_ENTRY = PrebuiltStatement(state_history.insert(), (*_ENTRY_COLUMNS, "removed_pos"))


async def select_current_entry(conn: AsyncConnection, room_id: str, event_type: str, state_key: str
                               ) -> StateEntry | None:
    rows = await _CURRENT_ENTRY.rows(conn, {"b_room_id": room_id, "b_type": event_type, "b_state_key": state_key})
    return StateEntry(*rows[0]) if rows else None


async def select_current_entries_by_event_ids(conn: AsyncConnection, room_id: str,
                                              event_ids: Sequence[str]) -> list[StateEntry]:
    # Through the events table: its event_id index, then this table's primary
    # key; not a scan of a large room's whole state for every state change.
    ids = list(event_ids)
    found: list[StateEntry] = []
    # Chunked: a rebuilt large room removes many entries at once.
    for start in range(0, len(ids), 500):
        rows = await _CURRENT_ENTRIES_BY_EVENT_IDS.rows(conn, {"b_room_id": room_id, "b_ids": ids[start:start + 500]})
        found.extend(StateEntry(*row) for row in rows)
    return found


async def remove_entry(conn: AsyncConnection, entry: StateEntry, removed_pos: int) -> None:
    """Moves a current entry to the history, in force until ``removed_pos``."""
    await _DELETE_CURRENT_ENTRY.execute(conn, {"b_room_id": entry.room_id, "b_type": entry.type,
                                               "b_state_key": entry.state_key})
    if entry.added_pos == removed_pos:
        # Added and removed at the same position: it never was the state at any position.
        return
    await _INSERT_HISTORY_ENTRY.execute(conn, {
        "room_id": entry.room_id, "type": entry.type, "state_key": entry.state_key, "event_id": entry.event_id,
        "membership": entry.membership, "added_pos": entry.added_pos, "removed_pos": removed_pos})


async def insert_entries(conn: AsyncConnection, entries: Sequence[StateEntry]) -> None:
    rows = [{"room_id": e.room_id, "type": e.type, "state_key": e.state_key, "event_id": e.event_id,
             "membership": e.membership, "added_pos": e.added_pos} for e in entries]
    if len(rows) == 1:
        await _INSERT_CURRENT_ENTRY.execute(conn, rows[0])
    elif rows:
        # Many (a join over federation brings a room's whole state): SQLAlchemy's multi-row INSERTs.
        await conn.execute(current_room_state.insert(), rows)


async def select_current_state(conn: AsyncConnection, room_id: str) -> list[StateEntry]:
    rows = await conn.execute(select(current_room_state).where(current_room_state.c.room_id == room_id))
    return [StateEntry(*row) for row in rows]


async def select_state_at(conn: AsyncConnection, room_id: str, position: int,
                          *, added_after: int | None = None,
                          types: Iterable[tuple[str, str | None]] | None = None,
                          members: Iterable[str] | None = None) -> list[StateEntry]:
    """The room's state at stream position ``position`` (after the event at it).

    ``added_after``: only entries that entered the state after that position
    (the state delta between two points). ``types``: only these (type,
    state_key) pairs; a None state_key means every key of the type.
    ``members``: all non-member state, and only these users' memberships
    (lazy-loading members without reading a large room's member list).
    """
    cur, hist = current_room_state.c, state_history.c
    current_q = select(cur.room_id, cur.type, cur.state_key, cur.event_id, cur.membership,
                       cur.added_pos).where(cur.room_id == room_id, cur.added_pos <= position)
    history_q = select(hist.room_id, hist.type, hist.state_key, hist.event_id, hist.membership,
                       hist.added_pos).where(hist.room_id == room_id, hist.added_pos <= position,
                                             hist.removed_pos > position)
    if added_after is not None:
        current_q = current_q.where(cur.added_pos > added_after)
        history_q = history_q.where(hist.added_pos > added_after)
    if types is not None:
        wanted = list(types)
        if not wanted:
            return []
        current_q = current_q.where(_types_clause(current_room_state, wanted))
        history_q = history_q.where(_types_clause(state_history, wanted))
    if members is not None:
        users = list(members)
        current_q = current_q.where(or_(cur.type != MEMBER, cur.state_key.in_(users)))
        history_q = history_q.where(or_(hist.type != MEMBER, hist.state_key.in_(users)))
    rows = await conn.execute(union_all(current_q, history_q))
    return [StateEntry(*row) for row in rows]


async def select_member_counts(conn: AsyncConnection, room_id: str) -> dict[str, int]:
    """How many members of the room have each membership now."""
    c = current_room_state.c
    rows = await conn.execute(select(c.membership, func.count()).where(
        c.room_id == room_id, c.type == MEMBER).group_by(c.membership))
    return {str(row[0]): int(row[1]) for row in rows}


async def select_heroes(conn: AsyncConnection, room_id: str, exclude_user: str, limit: int,
                        memberships: Sequence[str] = ("join", "invite")) -> list[str]:
    """The first members with one of ``memberships`` (joined or invited) by
    stream order, for a room summary."""
    c = current_room_state.c
    rows = await conn.execute(select(c.state_key).where(
        c.room_id == room_id, c.type == MEMBER, c.membership.in_(list(memberships)),
        c.state_key != exclude_user).order_by(c.added_pos).limit(limit))
    return [str(row[0]) for row in rows]


def _types_clause(table: Table, wanted: list[tuple[str, str | None]]) -> ColumnElement[bool]:
    c = table.c
    clauses: list[ColumnElement[bool]] = []
    for event_type, state_key in wanted:
        if state_key is None:
            clauses.append(c.type == event_type)
        else:
            clauses.append(and_(c.type == event_type, c.state_key == state_key))
    return or_(*clauses)


async def select_membership_history(conn: AsyncConnection, user_id: str,
                                    room_ids: Sequence[str] | None = None
                                    ) -> list[tuple[str, str | None, int, int | None]]:
    """Every membership the user had, as (room_id, membership, added_pos,
    removed_pos or None while current), for history visibility."""
    cur, hist = current_room_state.c, state_history.c
    current_q = select(cur.room_id, cur.membership, cur.added_pos, cur.added_pos.label("removed")) \
        .where(cur.type == MEMBER, cur.state_key == user_id)
    history_q = select(hist.room_id, hist.membership, hist.added_pos, hist.removed_pos) \
        .where(hist.type == MEMBER, hist.state_key == user_id)
    if room_ids is not None:
        current_q = current_q.where(cur.room_id.in_(list(room_ids)))
        history_q = history_q.where(hist.room_id.in_(list(room_ids)))
    result: list[tuple[str, str | None, int, int | None]] = []
    # One statement; the current rows come first, with no removal position.
    current_q = current_q.add_columns(literal(0).label("is_history"))
    history_q = history_q.add_columns(literal(1).label("is_history"))
    for row in await conn.execute(union_all(current_q, history_q)):
        result.append((row[0], row[1], int(row[2]), int(row[3]) if row[4] else None))
    return result


async def select_memberships_in_rooms(conn: AsyncConnection, user_id: str,
                                      room_ids: Sequence[str]) -> dict[str, str | None]:
    """The user's current membership row in each of the rooms (those with one)."""
    if not room_ids:
        return {}
    c = current_room_state.c
    rows = await conn.execute(select(c.room_id, c.membership).where(
        c.type == MEMBER, c.state_key == user_id, c.room_id.in_(list(room_ids))))
    return {str(row[0]): row[1] for row in rows}


async def select_user_memberships(conn: AsyncConnection, user_id: str, memberships: Sequence[str],
                                  *, added_after: int | None = None) -> list[StateEntry]:
    """The user's current membership rows with one of ``memberships``
    (``added_after``: only those that changed after that position)."""
    c = current_room_state.c
    stmt = select(current_room_state).where(
        c.type == MEMBER, c.state_key == user_id, c.membership.in_(list(memberships)))
    if added_after is not None:
        stmt = stmt.where(c.added_pos > added_after)
    return [StateEntry(*row) for row in await conn.execute(stmt)]


async def select_room_members(conn: AsyncConnection, room_id: str,
                              memberships: Sequence[str]) -> list[StateEntry]:
    c = current_room_state.c
    rows = await conn.execute(select(current_room_state).where(
        c.room_id == room_id, c.type == MEMBER, c.membership.in_(list(memberships))))
    return [StateEntry(*row) for row in rows]


# Rooms one batched state read covers (its IN lists stay well under the
# database's parameter limits, a lazy-loading sync's senders included).
ROOMS_PER_BATCH = 100


async def select_state_at_in_rooms(conn: AsyncConnection, positions: Mapping[str, int], *,
                                   members: Mapping[str, Set[str]] | None = None
                                   ) -> dict[str, list[StateEntry]]:
    """``select_state_at`` for many rooms, each at its own position, in two
    statements per ``ROOMS_PER_BATCH`` rooms (an initial sync's rooms).

    ``members``: per room, the only users whose memberships are wanted (all
    other state is). The statements read each room's entries in force
    somewhere between the batch's lowest and highest position (batches are
    made of rooms at nearby positions); which ones were in force at the
    room's own position is decided here.
    """
    found: dict[str, list[StateEntry]] = {room_id: [] for room_id in positions}
    # Rooms at nearby positions share a batch: the history rows read for a
    # batch span its lowest to highest position.
    room_ids = sorted(positions, key=lambda room_id: positions[room_id])
    cur, hist = current_room_state.c, state_history.c
    for start in range(0, len(room_ids), ROOMS_PER_BATCH):
        chunk = room_ids[start:start + ROOMS_PER_BATCH]
        lowest = min(positions[room_id] for room_id in chunk)
        highest = max(positions[room_id] for room_id in chunk)
        current_q = select(cur.room_id, cur.type, cur.state_key, cur.event_id, cur.membership,
                           cur.added_pos, literal(None, BigInteger).label("removed_pos")).where(
            cur.room_id.in_(chunk), cur.added_pos <= highest)
        history_q = select(hist.room_id, hist.type, hist.state_key, hist.event_id, hist.membership,
                           hist.added_pos, hist.removed_pos).where(
            hist.room_id.in_(chunk), hist.added_pos <= highest, hist.removed_pos > lowest)
        if members is not None:
            users = sorted(set().union(*(members[room_id] for room_id in chunk)))
            current_q = current_q.where(or_(cur.type != MEMBER, cur.state_key.in_(users)))
            history_q = history_q.where(or_(hist.type != MEMBER, hist.state_key.in_(users)))
        for row in await conn.execute(union_all(current_q, history_q)):
            room_id, event_type, state_key, added_pos, removed_pos = row[0], row[1], row[2], row[5], row[6]
            position = positions[room_id]
            if added_pos > position or (removed_pos is not None and removed_pos <= position):
                continue
            if members is not None and event_type == MEMBER and state_key not in members[room_id]:
                continue
            found[room_id].append(StateEntry(room_id, event_type, state_key, row[3], row[4], int(added_pos)))
    return found


async def select_member_counts_in_rooms(conn: AsyncConnection, room_ids: Sequence[str]
                                        ) -> dict[str, dict[str, int]]:
    """``select_member_counts`` for many rooms, one statement per batch."""
    found: dict[str, dict[str, int]] = {room_id: {} for room_id in room_ids}
    c = current_room_state.c
    ids = list(found)
    for start in range(0, len(ids), ROOMS_PER_BATCH):
        rows = await conn.execute(select(c.room_id, c.membership, func.count()).where(
            c.room_id.in_(ids[start:start + ROOMS_PER_BATCH]), c.type == MEMBER
        ).group_by(c.room_id, c.membership))
        for row in rows:
            found[str(row[0])][str(row[1])] = int(row[2])
    return found


async def select_current_entries_in_rooms(conn: AsyncConnection, room_ids: Sequence[str],
                                          keys: Sequence[tuple[str, str]]) -> list[StateEntry]:
    """The rooms' current entries of the given (type, state_key) pairs."""
    c = current_room_state.c
    ids = list(room_ids)
    found: list[StateEntry] = []
    if not keys:
        return found
    for start in range(0, len(ids), ROOMS_PER_BATCH):
        rows = await conn.execute(select(current_room_state).where(
            c.room_id.in_(ids[start:start + ROOMS_PER_BATCH]), _types_clause(current_room_state, list(keys))))
        found.extend(StateEntry(*row) for row in rows)
    return found


async def select_heroes_in_rooms(conn: AsyncConnection, room_ids: Sequence[str], exclude_user: str,
                                 limit: int) -> dict[str, tuple[list[str], list[str]]]:
    """Per room, ``select_heroes`` for joined or invited members and for
    those who left or were banned: the first ``limit`` of each by stream
    order, read with at most ``limit`` rows per room and membership (a large
    room's member list is not read)."""
    found: dict[str, tuple[list[str], list[str]]] = {room_id: ([], []) for room_id in room_ids}
    c = current_room_state.c
    ids = list(found)
    for start in range(0, len(ids), ROOMS_PER_BATCH):
        ranked = select(c.room_id, c.state_key, c.membership, c.added_pos, func.row_number().over(
            partition_by=(c.room_id, c.membership), order_by=(c.added_pos, c.state_key)).label("rank")).where(
            c.room_id.in_(ids[start:start + ROOMS_PER_BATCH]), c.type == MEMBER,
            c.membership.in_(["join", "invite", "leave", "ban"]), c.state_key != exclude_user).subquery()
        rows = await conn.execute(select(ranked.c.room_id, ranked.c.state_key, ranked.c.membership,
                                         ranked.c.added_pos).where(ranked.c.rank <= limit))
        by_room: dict[str, list[tuple[int, bool, str]]] = {}
        for row in rows:
            by_room.setdefault(str(row[0]), []).append((int(row[3]), row[2] in ("join", "invite"), str(row[1])))
        for room_id, candidates in by_room.items():
            candidates.sort()
            current, former = found[room_id]
            current.extend([user for _, is_current, user in candidates if is_current][:limit])
            former.extend([user for _, is_current, user in candidates if not is_current][:limit])
    return found
