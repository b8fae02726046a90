"""federationapi_sender_rooms: per room, the room_stream_position of the last
``roomserver.output`` NewRoomEvent the federation sender handled."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Table, Text, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from common.storage import Database
from federationapi.storage.tables import METADATA

sender_rooms = Table(
    "federationapi_sender_rooms",
    METADATA,
    Column("room_id", Text, primary_key=True),
    Column("stream_position", BigInteger, nullable=False),
)



def _build_upsert(dialect_name: str) -> Insert:
    insert = postgresql.insert(sender_rooms) if dialect_name == "postgresql" else sqlite.insert(sender_rooms)
    return insert.on_conflict_do_update(index_elements=["room_id"],
                                        set_={"stream_position": insert.excluded.stream_position})


# Built once: the sender runs both for every output entry that changes anything.
_SELECT_POSITION = select(sender_rooms.c.stream_position).where(sender_rooms.c.room_id == bindparam("b_room_id"))
_UPSERTS = {name: _build_upsert(name) for name in ("sqlite", "postgresql")}


class SenderRoomsTable:
    async def select_position(self, conn: AsyncConnection, room_id: str) -> int | None:
        return (await conn.execute(_SELECT_POSITION, {"b_room_id": room_id})).scalar_one_or_none()

    async def upsert_position(self, db: Database, conn: AsyncConnection, room_id: str, position: int) -> None:
        await conn.execute(_UPSERTS[db.dialect_name], {"room_id": room_id, "stream_position": position})
