"""syncapi_receipts: each user's latest receipt per room, receipt type and
thread; ``m.fully_read`` rows are read markers (served as room account data)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Table, Text, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from syncapi.storage.tables import metadata
from syncapi.storage.tables.current_state import MEMBER, current_room_state

FULLY_READ = "m.fully_read"
READ_PRIVATE = "m.read.private"

receipts = Table(
    "syncapi_receipts", metadata,
    Column("room_id", Text, primary_key=True),
    Column("receipt_type", Text, primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("thread_id", Text, primary_key=True),
    Column("event_id", Text, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("stream_pos", BigInteger, nullable=False),
    Index("syncapi_receipts_stream", "stream_pos"),
)


@dataclass(frozen=True, slots=True)
class StoredReceipt:
    room_id: str
    receipt_type: str
    user_id: str
    # "" when unthreaded.
    thread_id: str
    event_id: str
    ts: int
    stream_pos: int


def _receipt(row: Any) -> StoredReceipt:
    return StoredReceipt(room_id=row[0], receipt_type=row[1], user_id=row[2], thread_id=row[3],
                         event_id=row[4], ts=int(row[5]), stream_pos=int(row[6]))


_COLUMNS = (receipts.c.room_id, receipts.c.receipt_type, receipts.c.user_id, receipts.c.thread_id,
            receipts.c.event_id, receipts.c.ts, receipts.c.stream_pos)


async def select_receipt(conn: AsyncConnection, room_id: str, receipt_type: str, user_id: str,
                         thread_id: str) -> StoredReceipt | None:
    row = (await conn.execute(select(*_COLUMNS).where(
        receipts.c.room_id == room_id, receipts.c.receipt_type == receipt_type,
        receipts.c.user_id == user_id, receipts.c.thread_id == thread_id))).first()
    return None if row is None else _receipt(row)


async def select_visible_receipts(conn: AsyncConnection, user_id: str, *, after: int, upto: int,
                                  room_ids: Sequence[str] | None = None) -> list[StoredReceipt]:
    """The receipts in ``(after, upto]`` that ``user_id`` may see, in the
    rooms they are joined to (or in ``room_ids``): everyone's public ones,
    and their own private receipts and read markers."""
    r = receipts.c
    m = current_room_state.c
    visible = or_(and_(r.receipt_type != READ_PRIVATE, r.receipt_type != FULLY_READ), r.user_id == user_id)
    stmt = select(*_COLUMNS).where(r.stream_pos > after, r.stream_pos <= upto, visible)
    if room_ids is not None:
        stmt = stmt.where(r.room_id.in_(list(room_ids)))
    else:
        stmt = stmt.select_from(receipts.join(current_room_state, and_(
            m.room_id == r.room_id, m.type == MEMBER, m.state_key == user_id, m.membership == "join")))
    return [_receipt(row) for row in await conn.execute(stmt.order_by(r.stream_pos))]
