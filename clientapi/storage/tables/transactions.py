"""clientapi_transactions: which event a device's transaction ID produced,
so that a retried ``PUT .../send/{type}/{txnId}`` answers the same event ID.

A row is written (``pending``, with the event's JSON) before the event is
input and marked done once the room server has answered, so a retry after a
failed or interrupted input call re-inputs the very same event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    false,
    select,
    update,
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


# Marking transactions done (a few times a second under load), built once.
_MARK_DONE = (update(transactions)
              .where(transactions.c.user_id == bindparam("k_user"),
                     transactions.c.device_id == bindparam("k_device"),
                     transactions.c.endpoint == bindparam("k_endpoint"),
                     transactions.c.txn_id == bindparam("k_txn"))
              .values(pending=False, event_json=None))


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

    async def mark_done(self, conn: AsyncConnection, user_id: str, device_id: str, endpoint: str,
                        txn_id: str) -> None:
        # The JSON was only kept for a retry.
        await conn.execute(update(transactions).where(_key(user_id, device_id, endpoint, txn_id))
                           .values(pending=False, event_json=None))

    async def mark_done_many(self, conn: AsyncConnection, keys: Sequence[tuple[str, str, str, str]]) -> None:
        """``mark_done`` for several, in one statement."""
        await conn.execute(_MARK_DONE, [{"k_user": u, "k_device": d, "k_endpoint": e, "k_txn": t}
                                       for u, d, e, t in keys])

    async def delete(self, conn: AsyncConnection, user_id: str, device_id: str, endpoint: str,
                     txn_id: str) -> None:
        await conn.execute(delete(transactions).where(_key(user_id, device_id, endpoint, txn_id)))

    async def delete_older_than(self, conn: AsyncConnection, before_ts: int) -> None:
        await conn.execute(delete(transactions).where(transactions.c.created_ts < before_ts))
