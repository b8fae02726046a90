"""syncapi_room_positions: the last output-log entry the consumer applied per
room, to notice a missed entry (``last_sent_event_id``)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    Table,
    Text,
    bindparam,
    cast,
    false,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from common.prebuilt import PrebuiltStatement
from syncapi.storage.tables import metadata
from syncapi.storage.tables.current_state import StateEntry, current_room_state
from syncapi.storage.tables.events import events

room_positions = Table(
    "syncapi_room_positions", metadata,
    Column("room_id", Text, primary_key=True),
    Column("last_event_id", Text, nullable=False),
    Column("room_stream_position", BigInteger, nullable=False),
)


# Built once: every output entry runs both, and building a statement costs
# more CPU than SQLite takes to run it.
_SELECT_LAST_EVENT_ID = select(room_positions.c.last_event_id).where(room_positions.c.room_id == bindparam("b_room_id"))


def _build_upsert(dialect_name: str) -> Insert:
    insert = postgresql.insert(room_positions) if dialect_name == "postgresql" else sqlite.insert(room_positions)
    return insert.on_conflict_do_update(index_elements=["room_id"], set_={
        "last_event_id": insert.excluded.last_event_id,
        "room_stream_position": insert.excluded.room_stream_position})


# Run without SQLAlchemy's per-statement machinery (common/prebuilt.py).
_UPSERTS = {name: PrebuiltStatement(_build_upsert(name), ("room_id", "last_event_id", "room_stream_position"))
            for name in ("sqlite", "postgresql")}


async def select_last_event_id(conn: AsyncConnection, room_id: str) -> str | None:
    row = (await conn.execute(_SELECT_LAST_EVENT_ID, {"b_room_id": room_id})).first()
    return None if row is None else str(row[0])


# The room's last applied event and which of the entries' events are stored
# already: the two reads every output batch starts with, in one statement.
_LAST_AND_STORED = union_all(
    select(literal(1, Integer).label("is_last"), room_positions.c.last_event_id.label("event_id"),
           false().label("state_only"))
    .where(room_positions.c.room_id == bindparam("b_room_id")),
    select(literal(0, Integer), events.c.event_id, events.c.state_only)
    .where(events.c.event_id.in_(bindparam("b_ids", expanding=True))),
)
_LAST_AND_STORED_PREBUILT = PrebuiltStatement(_LAST_AND_STORED)
# The same, and the room's current entry of one state key: what a state
# event written alone (a join, a leave) reads first, in one round trip.
_CURRENT = current_room_state.c
_LAST_STORED_AND_CURRENT = PrebuiltStatement(union_all(
    select(literal(1, Integer).label("kind"), room_positions.c.last_event_id.label("event_id"),
           false().label("state_only"), cast(null(), Text).label("membership"),
           cast(null(), BigInteger).label("added_pos"))
    .where(room_positions.c.room_id == bindparam("b_room_id")),
    select(literal(0, Integer), events.c.event_id, events.c.state_only, cast(null(), Text), cast(null(), BigInteger))
    .where(events.c.event_id.in_(bindparam("b_ids", expanding=True))),
    select(literal(2, Integer), _CURRENT.event_id, false(), _CURRENT.membership, _CURRENT.added_pos)
    .where(_CURRENT.room_id == bindparam("b_room_id"), _CURRENT.type == bindparam("b_type"),
           _CURRENT.state_key == bindparam("b_state_key")),
))
#: The most event IDs select_last_and_stored takes (bound parameter limits).
LAST_AND_STORED_MAX_IDS = 500


async def select_last_and_stored(conn: AsyncConnection, room_id: str, event_ids: Sequence[str]
                                 ) -> tuple[str | None, dict[str, bool]]:
    """``select_last_event_id`` and, of ``event_ids`` (at most
    LAST_AND_STORED_MAX_IDS), those stored already (event ID -> whether only
    as state), in one statement."""
    last: str | None = None
    stored: dict[str, bool] = {}
    for is_last, event_id, state_only in await _LAST_AND_STORED_PREBUILT.rows(
            conn, {"b_room_id": room_id, "b_ids": list(set(event_ids))}):
        if is_last:
            last = str(event_id)
        else:
            stored[str(event_id)] = bool(state_only)
    return last, stored


async def select_last_stored_and_current(conn: AsyncConnection, room_id: str, event_ids: Sequence[str],
                                         event_type: str, state_key: str
                                         ) -> tuple[str | None, dict[str, bool], StateEntry | None]:
    """``select_last_and_stored`` and the room's current entry for
    (``event_type``, ``state_key``) (``current_state.select_current_entry``),
    in one statement."""
    last: str | None = None
    stored: dict[str, bool] = {}
    current: StateEntry | None = None
    for kind, event_id, state_only, membership, added_pos in await _LAST_STORED_AND_CURRENT.rows(conn, {
            "b_room_id": room_id, "b_ids": list(set(event_ids)), "b_type": event_type, "b_state_key": state_key}):
        if kind == 1:
            last = str(event_id)
        elif kind == 0:
            stored[str(event_id)] = bool(state_only)
        else:
            current = StateEntry(room_id=room_id, type=event_type, state_key=state_key, event_id=str(event_id),
                                 membership=membership, added_pos=int(added_pos))
    return last, stored, current


async def upsert_position(conn: AsyncConnection, room_id: str, last_event_id: str, room_stream_position: int) -> None:
    """Records the room's last applied entry."""
    await _UPSERTS[conn.dialect.name].execute(conn, {"room_id": room_id, "last_event_id": last_event_id,
                                                     "room_stream_position": room_stream_position})
