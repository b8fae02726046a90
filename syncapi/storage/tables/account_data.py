"""syncapi_account_data: each user's account data (global: room_id ""),
as the user API published it, at the account-data stream position of its
last change."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Index, Table, Text, select, union
from sqlalchemy.ext.asyncio import AsyncConnection

from syncapi.storage.tables import metadata
from syncapi.storage.tables.current_state import MEMBER, current_room_state

account_data = Table(
    "syncapi_account_data", metadata,
    Column("user_id", Text, primary_key=True),
    Column("room_id", Text, primary_key=True),
    Column("type", Text, primary_key=True),
    Column("content_json", Text, nullable=False),
    Column("stream_pos", BigInteger, nullable=False),
    Index("syncapi_account_data_user_pos", "user_id", "stream_pos"),
)


@dataclass(frozen=True, slots=True)
class StoredAccountData:
    room_id: str
    type: str
    content_json: str
    stream_pos: int


async def select_content(conn: AsyncConnection, user_id: str, room_id: str, data_type: str) -> str | None:
    t = account_data.c
    row = (await conn.execute(select(t.content_json).where(
        t.user_id == user_id, t.room_id == room_id, t.type == data_type))).first()
    return None if row is None else str(row[0])


async def select_changes(conn: AsyncConnection, user_id: str, *, after: int, upto: int) -> list[StoredAccountData]:
    """The user's account data changed in (after, upto], oldest first."""
    t = account_data.c
    stmt = (select(t.room_id, t.type, t.content_json, t.stream_pos)
            .where(t.user_id == user_id, t.stream_pos > after, t.stream_pos <= upto)
            .order_by(t.stream_pos))
    return [StoredAccountData(row[0], row[1], row[2], int(row[3])) for row in await conn.execute(stmt)]


async def select_known_local_users(conn: AsyncConnection, server_name: str) -> list[str]:
    """This server's users the read model knows of: members (in any
    membership) of a room, or owners of account data."""
    suffix = "%:" + server_name
    state = current_room_state.c
    members = select(state.state_key.label("user_id")).where(state.type == MEMBER,
                                                             state.state_key.like(suffix))
    owners = select(account_data.c.user_id).where(account_data.c.user_id.like(suffix))
    return sorted(str(row[0]) for row in await conn.execute(union(members, owners)))
