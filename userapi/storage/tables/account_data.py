"""userapi_account_data: a user's account data, global (room_id "") and per room."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.storage.tables import METADATA

account_data = Table(
    "userapi_account_data",
    METADATA,
    Column("user_id", Text, primary_key=True),
    # "" for global account data.
    Column("room_id", Text, primary_key=True),
    Column("type", Text, primary_key=True),
    Column("content_json", Text, nullable=False),
)


@dataclass(frozen=True)
class AccountDataRow:
    room_id: str
    type: str
    content_json: str


class AccountDataTable:
    async def select(self, conn: AsyncConnection, user_id: str, room_id: str, data_type: str
                     ) -> AccountDataRow | None:
        result = await conn.execute(select(account_data.c.content_json).where(
            account_data.c.user_id == user_id, account_data.c.room_id == room_id,
            account_data.c.type == data_type))
        found = result.first()
        return None if found is None else AccountDataRow(room_id, data_type, found.content_json)

    async def select_all(self, conn: AsyncConnection, user_id: str, room_id: str | None
                         ) -> list[AccountDataRow]:
        """One scope's account data, or every scope's when ``room_id`` is None."""
        query = select(account_data.c.room_id, account_data.c.type, account_data.c.content_json).where(
            account_data.c.user_id == user_id)
        if room_id is not None:
            query = query.where(account_data.c.room_id == room_id)
        result = await conn.execute(query.order_by(account_data.c.room_id, account_data.c.type))
        return [AccountDataRow(row.room_id, row.type, row.content_json) for row in result]
