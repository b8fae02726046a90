"""syncapi_room_positions: the last output-log entry the consumer applied per
room, to notice a missed entry (``last_sent_event_id``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from syncapi.storage.tables import metadata

room_positions = Table(
    "syncapi_room_positions", metadata,
    Column("room_id", Text, primary_key=True),
    Column("last_event_id", Text, nullable=False),
    Column("room_stream_position", BigInteger, nullable=False),
)


async def select_last_event_id(conn: AsyncConnection, room_id: str) -> str | None:
    row = (await conn.execute(select(room_positions.c.last_event_id)
                              .where(room_positions.c.room_id == room_id))).first()
    return None if row is None else str(row[0])
