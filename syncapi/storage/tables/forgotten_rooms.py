"""syncapi_forgotten_rooms: the rooms each user has forgotten, as of which
membership (a newer membership of the user in the room un-forgets it)."""

from __future__ import annotations

from sqlalchemy import Column, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from syncapi.storage.tables import metadata

forgotten_rooms = Table(
    "syncapi_forgotten_rooms", metadata,
    Column("user_id", Text, primary_key=True),
    Column("room_id", Text, primary_key=True),
    Column("membership_event_id", Text, nullable=False),
)


async def select_forgotten_rooms(conn: AsyncConnection, user_id: str) -> dict[str, str]:
    """room ID -> the membership event the room was forgotten at."""
    rows = await conn.execute(select(forgotten_rooms.c.room_id, forgotten_rooms.c.membership_event_id)
                              .where(forgotten_rooms.c.user_id == user_id))
    return {row.room_id: str(row.membership_event_id) for row in rows}
