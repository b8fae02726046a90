"""federationapi_inbound_transactions: the answer to each inbound /send
transaction, by (origin, transaction ID), so that a retry is answered again
without processing its PDUs and EDUs twice."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Table, Text, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from federationapi.storage.tables import METADATA

inbound_transactions = Table(
    "federationapi_inbound_transactions",
    METADATA,
    Column("origin", Text, primary_key=True),
    Column("txn_id", Text, primary_key=True),
    Column("response_json", Text, nullable=False),
    Column("received_ts", BigInteger, nullable=False),
)


class InboundTransactionsTable:
    async def select_response(self, conn: AsyncConnection, origin: str, txn_id: str) -> str | None:
        query = select(inbound_transactions.c.response_json).where(
            inbound_transactions.c.origin == origin, inbound_transactions.c.txn_id == txn_id)
        value: str | None = (await conn.execute(query)).scalar_one_or_none()
        return value

    async def delete_older_than(self, conn: AsyncConnection, before_ts: int) -> int:
        result = await conn.execute(delete(inbound_transactions).where(inbound_transactions.c.received_ts < before_ts))
        return result.rowcount
