"""clientapi_transactions: which event a device's transaction ID produced,
so that a retried ``PUT .../send/{type}/{txnId}`` answers the same event ID.

A row is written (``pending``, with the event's JSON) before the event is
input and marked done once the room server has answered, so a retry after a
failed or interrupted input call re-inputs the very same event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


# PostgreSQL: a group of claims as ONE statement run outside a transaction
# (it is atomic on its own): one round trip instead of BEGIN, the insert and
# COMMIT, and no SQLAlchemy machinery around it. Inserts each row unless an
# unexpired row has its key (an expired one is replaced), and answers the keys
# written. $1-$5, $7, $8: arrays with an element per claim; $6 created_ts,
# $9 the expiry cutoff.
_CLAIM_POSTGRES = """
INSERT INTO clientapi_transactions AS t
    (user_id, device_id, endpoint, txn_id, event_id, created_ts, pending, room_version, event_json)
SELECT c.user_id, c.device_id, c.endpoint, c.txn_id, c.event_id, $6::bigint, TRUE, c.room_version, c.event_json
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $7::text[], $8::text[])
    AS c(user_id, device_id, endpoint, txn_id, event_id, room_version, event_json)
ON CONFLICT (user_id, device_id, endpoint, txn_id) DO UPDATE SET
    event_id = excluded.event_id, created_ts = excluded.created_ts, pending = excluded.pending,
    room_version = excluded.room_version, event_json = excluded.event_json
WHERE t.created_ts < $9::bigint
RETURNING t.user_id, t.device_id, t.endpoint, t.txn_id
"""


@dataclass(frozen=True)
class Claim:
    user_id: str
    device_id: str
    endpoint: str
    txn_id: str
    event_id: str
    room_version: str
    event_json: str


async def asyncpg_connection(conn: AsyncConnection) -> Any | None:
    """The asyncpg connection under ``conn`` (not in a transaction), or None
    on another driver."""
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "asyncpg" or conn.in_transaction():
        return None
    raw = await conn.get_raw_connection()
    return raw.driver_connection


class TransactionsTable:
    async def claim_many_postgres(self, asyncpg_conn: Any, claims: Sequence[Claim], now: int,
                                  cutoff: int) -> set[tuple[str, str, str, str]]:
        """Writes the claims (see ``_CLAIM_POSTGRES``) on an asyncpg
        connection outside a transaction; answers the keys written. A key
        twice in ``claims`` is an error (one statement may not touch a row
        twice)."""
        rows = await asyncpg_conn.fetch(
            _CLAIM_POSTGRES, [c.user_id for c in claims], [c.device_id for c in claims],
            [c.endpoint for c in claims], [c.txn_id for c in claims], [c.event_id for c in claims], now,
            [c.room_version for c in claims], [c.event_json for c in claims], cutoff)
        return {(row[0], row[1], row[2], row[3]) for row in rows}

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
