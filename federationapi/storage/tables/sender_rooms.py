"""federationapi_sender_rooms: per room, the room_stream_position of the last
``roomserver.output`` NewRoomEvent the federation sender handled."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from common.storage import Database
from federationapi.storage.tables import METADATA

sender_rooms = Table(
    "federationapi_sender_rooms",
    METADATA,
    Column("room_id", Text, primary_key=True),
    Column("stream_position", BigInteger, nullable=False),
)


class SenderRoomsTable:
    async def select_position(self, conn: AsyncConnection, room_id: str) -> int | None:
        query = select(sender_rooms.c.stream_position).where(sender_rooms.c.room_id == room_id)
        return (await conn.execute(query)).scalar_one_or_none()

    async def upsert_position(self, db: Database, conn: AsyncConnection, room_id: str, position: int) -> None:
        await conn.execute(db.upsert(sender_rooms, {"room_id": room_id, "stream_position": position},
                                     ["room_id"]))
