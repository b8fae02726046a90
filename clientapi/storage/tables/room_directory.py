"""clientapi_room_directory: the rooms published in this server's room
directory (``visibility: public``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Table, Text, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from clientapi.storage.tables import METADATA

room_directory = Table(
    "clientapi_room_directory",
    METADATA,
    Column("room_id", Text, primary_key=True),
    Column("published_ts", BigInteger, nullable=False),
)


class RoomDirectoryTable:
    async def delete(self, conn: AsyncConnection, room_id: str) -> None:
        await conn.execute(delete(room_directory).where(room_directory.c.room_id == room_id))

    async def contains(self, conn: AsyncConnection, room_id: str) -> bool:
        result = await conn.execute(select(room_directory.c.room_id).where(room_directory.c.room_id == room_id))
        return result.first() is not None

    async def select_all(self, conn: AsyncConnection) -> list[str]:
        result = await conn.execute(select(room_directory.c.room_id).order_by(room_directory.c.room_id))
        return [str(room_id) for room_id in result.scalars()]
