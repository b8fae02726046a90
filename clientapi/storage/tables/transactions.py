"""clientapi_transactions: which event a device's transaction ID produced,
so that a retried ``PUT .../send/{type}/{txnId}`` answers the same event ID."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Table, Text, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from clientapi.storage.tables import METADATA

transactions = Table(
    "clientapi_transactions",
    METADATA,
    Column("user_id", Text, primary_key=True),
    Column("device_id", Text, primary_key=True),
    Column("endpoint", Text, primary_key=True),
    Column("txn_id", Text, primary_key=True),
    Column("event_id", Text, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
)


class TransactionsTable:
    async def select_event_id(self, conn: AsyncConnection, user_id: str, device_id: str, endpoint: str,
                              txn_id: str, not_before_ts: int) -> str | None:
        result = await conn.execute(select(transactions.c.event_id).where(
            transactions.c.user_id == user_id, transactions.c.device_id == device_id,
            transactions.c.endpoint == endpoint, transactions.c.txn_id == txn_id,
            transactions.c.created_ts >= not_before_ts))
        found = result.first()
        return None if found is None else str(found.event_id)

    async def delete_older_than(self, conn: AsyncConnection, before_ts: int) -> None:
        await conn.execute(delete(transactions).where(transactions.c.created_ts < before_ts))
