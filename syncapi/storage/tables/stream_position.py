"""syncapi_stream_position: the global stream counter (the /sync token's position)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Table, Text, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from syncapi.storage.tables import metadata

GLOBAL_STREAM = "global"

stream_position = Table(
    "syncapi_stream_position", metadata,
    Column("stream_name", Text, primary_key=True),
    Column("position", BigInteger, nullable=False),
)


async def next_position(conn: AsyncConnection) -> int:
    """Takes the next position. Inside a write transaction the row stays
    locked until commit, so positions become visible in the order taken."""
    result = await conn.execute(
        update(stream_position)
        .where(stream_position.c.stream_name == GLOBAL_STREAM)
        .values(position=stream_position.c.position + 1)
        .returning(stream_position.c.position)
    )
    return int(result.scalar_one())


async def current_position(conn: AsyncConnection) -> int:
    result = await conn.execute(
        select(stream_position.c.position).where(stream_position.c.stream_name == GLOBAL_STREAM))
    return int(result.scalar_one())
