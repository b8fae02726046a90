"""syncapi_filters: the filters clients upload, numbered per user."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Table, Text, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from syncapi.storage.tables import metadata

filters = Table(
    "syncapi_filters", metadata,
    Column("user_id", Text, primary_key=True),
    Column("filter_id", BigInteger, primary_key=True, autoincrement=False),
    Column("filter_json", Text, nullable=False),
)


async def insert_filter(conn: AsyncConnection, user_id: str, filter_json: str) -> int:
    """Stores a filter under the user's next ID (call inside a write transaction)."""
    c = filters.c
    # An identical filter keeps its ID, so clients that upload the same filter
    # at every start do not grow the table.
    existing = (await conn.execute(select(c.filter_id).where(
        c.user_id == user_id, c.filter_json == filter_json).limit(1))).first()
    if existing is not None:
        return int(existing[0])
    highest = (await conn.execute(select(func.max(c.filter_id)).where(c.user_id == user_id))).scalar()
    filter_id = 0 if highest is None else int(highest) + 1
    await conn.execute(filters.insert().values(user_id=user_id, filter_id=filter_id,
                                               filter_json=filter_json))
    return filter_id


async def select_filter(conn: AsyncConnection, user_id: str, filter_id: int) -> str | None:
    c = filters.c
    row = (await conn.execute(select(c.filter_json).where(
        c.user_id == user_id, c.filter_id == filter_id))).first()
    return None if row is None else str(row[0])
