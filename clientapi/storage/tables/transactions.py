"""clientapi_transactions: the transaction IDs of the client API's own
idempotent requests (``PUT /sendToDevice/{type}/{txnId}``), so that a retry
is answered without being done twice.

A sent event's transaction is kept by the room server, with the event
(``roomserver_transactions``, ``PerformSendEvent``). The ``pending``,
``room_version`` and ``event_json`` columns are from when sends were claimed
here before their input; nothing writes them any more.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Table,
    Text,
    and_,
    delete,
    false,
    select,
)
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
    Column("pending", Boolean, nullable=False, server_default=false()),
    Column("room_version", Text, nullable=True),
    Column("event_json", Text, nullable=True),
)


@dataclass(frozen=True)
class TransactionRow:
    event_id: str
    pending: bool
    room_version: str | None
    event_json: str | None


def _key(user_id: str, device_id: str, endpoint: str, txn_id: str) -> ColumnElement[bool]:
    return and_(transactions.c.user_id == user_id, transactions.c.device_id == device_id,
                transactions.c.endpoint == endpoint, transactions.c.txn_id == txn_id)


class TransactionsTable:
    async def select(self, conn: AsyncConnection, user_id: str, device_id: str, endpoint: str,
                     txn_id: str, not_before_ts: int) -> TransactionRow | None:
        result = await conn.execute(
            select(transactions.c.event_id, transactions.c.pending, transactions.c.room_version,
                   transactions.c.event_json)
            .where(_key(user_id, device_id, endpoint, txn_id), transactions.c.created_ts >= not_before_ts))
        found = result.first()
        if found is None:
            return None
        return TransactionRow(event_id=str(found.event_id), pending=bool(found.pending),
                              room_version=found.room_version, event_json=found.event_json)

    async def delete_older_than(self, conn: AsyncConnection, before_ts: int) -> None:
        await conn.execute(delete(transactions).where(transactions.c.created_ts < before_ts))
