"""syncapi_user_directory and syncapi_directory_public_rooms: what POST
/user_directory/search looks in.

As Synapse keeps its directory in tables of its own updated from state
changes, these are written by the room-server consumer as events arrive:
each user's profile as of their latest join (display name and avatar of the
m.room.member event), and which rooms have a public join rule now. A search
finds the users who share a room with the searcher and the users joined to
public rooms; the memberships come from syncapi_current_room_state.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Table, Text, and_, bindparam, delete, exists, func, literal, select, union
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from common.prebuilt import PrebuiltStatement
from common.storage import insert_or_ignore_statement, upsert_statement
from syncapi.filters import like_pattern
from syncapi.storage.tables import metadata
from syncapi.storage.tables.current_state import MEMBER, current_room_state

user_directory = Table(
    "syncapi_user_directory", metadata,
    Column("user_id", Text, primary_key=True),
    Column("display_name", Text),
    Column("avatar_url", Text),
)

directory_public_rooms = Table(
    "syncapi_directory_public_rooms", metadata,
    Column("room_id", Text, primary_key=True),
)


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    user_id: str
    display_name: str | None
    avatar_url: str | None


def _build_set_profile(dialect_name: str) -> Insert:
    return upsert_statement(dialect_name, user_directory, {
        "user_id": bindparam("b_user_id"), "display_name": bindparam("b_display_name"),
        "avatar_url": bindparam("b_avatar_url")}, ["user_id"])


# Built once: every join writes it, and building it cost more CPU than running it.
# Run without SQLAlchemy's per-statement machinery (common/prebuilt.py).
_SET_PROFILE = {name: PrebuiltStatement(_build_set_profile(name)) for name in ("sqlite", "postgresql")}


async def set_profile(conn: AsyncConnection, user_id: str, display_name: str | None,
                      avatar_url: str | None) -> None:
    await _SET_PROFILE[conn.dialect.name].execute(conn, {
        "b_user_id": user_id, "b_display_name": display_name, "b_avatar_url": avatar_url})


async def set_room_public(conn: AsyncConnection, room_id: str, public: bool) -> None:
    if public:
        await conn.execute(insert_or_ignore_statement(
            conn.dialect.name, directory_public_rooms, {"room_id": room_id}, ["room_id"]))
    else:
        await conn.execute(delete(directory_public_rooms).where(directory_public_rooms.c.room_id == room_id))


async def search_users(conn: AsyncConnection, searcher: str, words: list[str], limit: int
                       ) -> list[DirectoryEntry]:
    """Up to ``limit`` users visible to ``searcher`` whose user ID or display
    name contains every word (case-insensitive): users sharing a room with the
    searcher first, then by display name and user ID."""
    mine = current_room_state.alias("mine")
    theirs = current_room_state.alias("theirs")
    sharing = select(theirs.c.state_key.label("user_id")).select_from(mine.join(theirs, and_(
        theirs.c.room_id == mine.c.room_id, theirs.c.type == MEMBER, theirs.c.membership == "join",
    ))).where(mine.c.type == MEMBER, mine.c.state_key == searcher, mine.c.membership == "join")
    members = current_room_state.c
    in_public = select(members.state_key.label("user_id")).select_from(current_room_state.join(
        directory_public_rooms, directory_public_rooms.c.room_id == members.room_id,
    )).where(members.type == MEMBER, members.membership == "join")
    visible = union(sharing, in_public).subquery()
    d = user_directory.c
    haystack = func.lower(d.user_id + literal(" ") + func.coalesce(d.display_name, ""))
    shares = exists(sharing.where(theirs.c.state_key == d.user_id))
    stmt = (select(d.user_id, d.display_name, d.avatar_url)
            .where(d.user_id.in_(select(visible.c.user_id)),
                   *[haystack.like("%" + like_pattern(word) + "%", escape="\\") for word in words])
            .order_by(shares.desc(), func.lower(func.coalesce(d.display_name, d.user_id)), d.user_id)
            .limit(limit))
    return [DirectoryEntry(str(r.user_id), r.display_name, r.avatar_url) for r in await conn.execute(stmt)]

