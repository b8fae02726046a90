"""syncapi_presence: each user's latest presence (modules/presence.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Table, Text, and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from syncapi.storage.tables import metadata
from syncapi.storage.tables.current_state import MEMBER, current_room_state

presence = Table(
    "syncapi_presence", metadata,
    Column("user_id", Text, primary_key=True),
    Column("presence", Text, nullable=False),
    Column("status_msg", Text),
    Column("last_active_ts", BigInteger, nullable=False),
    Column("stream_pos", BigInteger, nullable=False),
    Index("syncapi_presence_stream", "stream_pos"),
)


@dataclass(frozen=True, slots=True)
class StoredPresence:
    user_id: str
    presence: str
    status_msg: str | None
    last_active_ts: int
    stream_pos: int


_COLUMNS = (presence.c.user_id, presence.c.presence, presence.c.status_msg, presence.c.last_active_ts,
            presence.c.stream_pos)


def _presence(row: Any) -> StoredPresence:
    return StoredPresence(user_id=row[0], presence=row[1], status_msg=row[2],
                          last_active_ts=int(row[3]), stream_pos=int(row[4]))


async def select_presence(conn: AsyncConnection, user_id: str) -> StoredPresence | None:
    row = (await conn.execute(select(*_COLUMNS).where(presence.c.user_id == user_id))).first()
    return None if row is None else _presence(row)


async def select_visible_presence(conn: AsyncConnection, user_id: str, *, after: int, upto: int
                                  ) -> list[StoredPresence]:
    """Presence changes in ``(after, upto]`` of the user and of everyone
    sharing a joined room with them."""
    mine = current_room_state.alias("mine")
    theirs = current_room_state.alias("theirs")
    sharing = select(theirs.c.state_key).select_from(mine.join(theirs, and_(
        theirs.c.room_id == mine.c.room_id, theirs.c.type == MEMBER, theirs.c.membership == "join",
    ))).where(mine.c.type == MEMBER, mine.c.state_key == user_id, mine.c.membership == "join")
    p = presence.c
    stmt = select(*_COLUMNS).where(p.stream_pos > after, p.stream_pos <= upto,
                                   (p.user_id == user_id) | p.user_id.in_(sharing)).order_by(p.stream_pos)
    return [_presence(row) for row in await conn.execute(stmt)]


async def select_shares_room(conn: AsyncConnection, user_id: str, other_user_id: str) -> bool:
    """Whether both users are joined to one room at least: a look-up per
    room of ``user_id`` (the primary key), not a read of everyone sharing
    their rooms (``select_users_sharing_rooms``: every member of every room)."""
    mine = current_room_state.alias("mine")
    theirs = current_room_state.alias("theirs")
    stmt = select(theirs.c.room_id).select_from(mine.join(theirs, and_(
        theirs.c.room_id == mine.c.room_id, theirs.c.type == MEMBER, theirs.c.state_key == other_user_id,
        theirs.c.membership == "join",
    ))).where(mine.c.type == MEMBER, mine.c.state_key == user_id, mine.c.membership == "join").limit(1)
    return (await conn.execute(stmt)).first() is not None


async def select_users_sharing_rooms(conn: AsyncConnection, user_id: str) -> set[str]:
    """Everyone joined to a room the user is joined to (the user too)."""
    mine = current_room_state.alias("mine")
    theirs = current_room_state.alias("theirs")
    stmt = select(theirs.c.state_key).distinct().select_from(mine.join(theirs, and_(
        theirs.c.room_id == mine.c.room_id, theirs.c.type == MEMBER, theirs.c.membership == "join",
    ))).where(mine.c.type == MEMBER, mine.c.state_key == user_id, mine.c.membership == "join")
    return {str(row[0]) for row in await conn.execute(stmt)} | {user_id}
