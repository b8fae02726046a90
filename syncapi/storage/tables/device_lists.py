"""syncapi_device_list_changes: the device-list stream position of each
user's last change of devices or keys (from ``userapi.device_list_update``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Table, Text, and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from syncapi.storage.tables import metadata
from syncapi.storage.tables.current_state import MEMBER, current_room_state

device_list_changes = Table(
    "syncapi_device_list_changes", metadata,
    Column("user_id", Text, primary_key=True),
    Column("stream_pos", BigInteger, nullable=False),
    Index("syncapi_device_list_changes_pos", "stream_pos"),
)


async def select_changed_users(conn: AsyncConnection, user_id: str, *, after: int, upto: int) -> set[str]:
    """Users who changed devices or keys in ``(after, upto]``: the user and
    everyone sharing a joined room with them."""
    mine = current_room_state.alias("mine")
    theirs = current_room_state.alias("theirs")
    sharing = select(theirs.c.state_key).select_from(mine.join(theirs, and_(
        theirs.c.room_id == mine.c.room_id, theirs.c.type == MEMBER, theirs.c.membership == "join",
    ))).where(mine.c.type == MEMBER, mine.c.state_key == user_id, mine.c.membership == "join")
    d = device_list_changes.c
    stmt = select(d.user_id).where(d.stream_pos > after, d.stream_pos <= upto,
                                   (d.user_id == user_id) | d.user_id.in_(sharing))
    return {str(row[0]) for row in await conn.execute(stmt)}
