"""syncapi_room_positions: the last output-log entry the consumer applied per
room, to notice a missed entry (``last_sent_event_id``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Table, Text, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from syncapi.storage.tables import metadata

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


_UPSERTS = {name: _build_upsert(name) for name in ("sqlite", "postgresql")}


async def select_last_event_id(conn: AsyncConnection, room_id: str) -> str | None:
    row = (await conn.execute(_SELECT_LAST_EVENT_ID, {"b_room_id": room_id})).first()
    return None if row is None else str(row[0])


async def upsert_position(conn: AsyncConnection, room_id: str, last_event_id: str, room_stream_position: int) -> None:
    """Records the room's last applied entry."""
    await conn.execute(_UPSERTS[conn.dialect.name], {"room_id": room_id, "last_event_id": last_event_id,
                                                      "room_stream_position": room_stream_position})
