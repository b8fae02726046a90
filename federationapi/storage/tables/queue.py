"""federationapi_queue: each destination's outgoing PDUs and EDUs, in the
order they were queued, until the destination has accepted the transaction
they went out in."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, Row, Table, Text, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federationapi.storage.tables import METADATA

PDU = "pdu"
EDU = "edu"

queue = Table(
    "federationapi_queue",
    METADATA,
    Column("queue_position", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
           autoincrement=True),
    Column("destination", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("json_nid", BigInteger, nullable=False),
    Column("event_id", Text, nullable=True),
    Column("coalesce_key", Text, nullable=True),
    Column("expires_ts", BigInteger, nullable=True),
    Column("txn_id", Text, nullable=True),
    sqlite_autoincrement=True,
)


@dataclass(frozen=True)
class QueueEntry:
    position: int
    destination: str
    kind: str
    json_nid: int
    event_id: str | None
    expires_ts: int | None
    txn_id: str | None


def _entry(row: Row[Any]) -> QueueEntry:
    return QueueEntry(row.queue_position, row.destination, row.kind, row.json_nid, row.event_id, row.expires_ts,
                      row.txn_id)


class QueueTable:
    async def insert(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        """Rows with destination, kind, json_nid and optionally event_id,
        coalesce_key, expires_ts; queued in the order given."""
        for row in rows:
            # One statement per row: a multi-row INSERT does not promise the
            # order of the positions it assigns.
            await conn.execute(insert(queue).values(**row))

    async def delete_superseded(self, conn: AsyncConnection, destinations: Iterable[str],
                                coalesce_key: str) -> list[int]:
        """Deletes the entries with ``coalesce_key`` not yet in a transaction;
        answers their JSON nids."""
        where = (queue.c.destination.in_(list(destinations)), queue.c.coalesce_key == coalesce_key,
                 queue.c.txn_id.is_(None))
        nids = list((await conn.execute(select(queue.c.json_nid).where(*where))).scalars())
        if nids:
            await conn.execute(delete(queue).where(*where))
        return nids

    async def select_in_txn(self, conn: AsyncConnection, destination: str) -> list[QueueEntry]:
        """The entries already given a transaction ID (at most one
        transaction's worth is pending per destination), in queue order."""
        rows = await conn.execute(select(queue).where(queue.c.destination == destination,
                                                      queue.c.txn_id.is_not(None))
                                  .order_by(queue.c.queue_position))
        return [_entry(r) for r in rows]

    async def select_next(self, conn: AsyncConnection, destination: str, kind: str, limit: int) -> list[QueueEntry]:
        rows = await conn.execute(select(queue).where(queue.c.destination == destination, queue.c.kind == kind,
                                                      queue.c.txn_id.is_(None))
                                  .order_by(queue.c.queue_position).limit(limit))
        return [_entry(r) for r in rows]

    async def assign_txn(self, conn: AsyncConnection, positions: Sequence[int], txn_id: str | None) -> None:
        if positions:
            await conn.execute(update(queue).where(queue.c.queue_position.in_(list(positions)))
                               .values(txn_id=txn_id))

    async def delete_positions(self, conn: AsyncConnection, positions: Sequence[int]) -> None:
        if positions:
            await conn.execute(delete(queue).where(queue.c.queue_position.in_(list(positions))))

    async def delete_expired(self, conn: AsyncConnection, destination: str, now_ms: int) -> list[int]:
        """Deletes expired entries not in a transaction; answers their JSON nids."""
        where = (queue.c.destination == destination, queue.c.expires_ts.is_not(None),
                 queue.c.expires_ts < now_ms, queue.c.txn_id.is_(None))
        nids = list((await conn.execute(select(queue.c.json_nid).where(*where))).scalars())
        if nids:
            await conn.execute(delete(queue).where(*where))
        return nids

    async def select_destinations(self, conn: AsyncConnection) -> list[str]:
        rows = await conn.execute(select(queue.c.destination).distinct())
        return sorted(rows.scalars())

    async def count(self, conn: AsyncConnection, destination: str | None = None) -> int:
        query = select(func.count()).select_from(queue)
        if destination is not None:
            query = query.where(queue.c.destination == destination)
        return int((await conn.execute(query)).scalar_one())
