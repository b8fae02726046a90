"""userapi_pushers: the pushers a user registered (POST /pushers/set)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Table, Text, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.storage.tables import METADATA

pushers = Table(
    "userapi_pushers",
    METADATA,
    Column("user_id", Text, primary_key=True),
    Column("app_id", Text, primary_key=True),
    Column("pushkey", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("app_display_name", Text, nullable=False),
    Column("device_display_name", Text, nullable=False),
    Column("profile_tag", Text, nullable=False),
    Column("lang", Text, nullable=False),
    Column("data_json", Text, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class PusherRow:
    user_id: str
    app_id: str
    pushkey: str
    kind: str
    app_display_name: str
    device_display_name: str
    profile_tag: str
    lang: str
    data_json: str
    created_ts: int


class PushersTable:
    async def select_for_user(self, conn: AsyncConnection, user_id: str) -> list[PusherRow]:
        result = await conn.execute(select(pushers).where(pushers.c.user_id == user_id)
                                    .order_by(pushers.c.created_ts, pushers.c.app_id, pushers.c.pushkey))
        return [PusherRow(**row._mapping) for row in result]

    async def delete(self, conn: AsyncConnection, app_id: str, pushkey: str, *,
                     user_id: str | None = None, except_user_id: str | None = None) -> int:
        """Deletes the pushers with this app ID and push key: one user's
        (``user_id``), or every user's but ``except_user_id``."""
        statement = delete(pushers).where(pushers.c.app_id == app_id, pushers.c.pushkey == pushkey)
        if user_id is not None:
            statement = statement.where(pushers.c.user_id == user_id)
        if except_user_id is not None:
            statement = statement.where(pushers.c.user_id != except_user_id)
        result = await conn.execute(statement)
        return int(result.rowcount or 0)
