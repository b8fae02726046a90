"""federationapi_queue_json: the JSON of queued PDUs and EDUs, stored once
however many destinations' queues refer to it."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import BigInteger, Column, Integer, Table, Text, delete, exists, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from federationapi.storage.tables import METADATA
from federationapi.storage.tables.queue import queue

queue_json = Table(
    "federationapi_queue_json",
    METADATA,
    Column("json_nid", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("json_text", Text, nullable=False),
    sqlite_autoincrement=True,
)


class QueueJSONTable:
    async def insert(self, conn: AsyncConnection, json_text: str) -> int:
        result = await conn.execute(insert(queue_json).values(json_text=json_text)
                                    .returning(queue_json.c.json_nid))
        return int(result.scalar_one())

    async def select(self, conn: AsyncConnection, json_nids: Iterable[int]) -> dict[int, str]:
        nids = list(set(json_nids))
        if not nids:
            return {}
        rows = await conn.execute(select(queue_json.c.json_nid, queue_json.c.json_text)
                                  .where(queue_json.c.json_nid.in_(nids)))
        return {int(nid): text for nid, text in rows}

    async def delete_unreferenced(self, conn: AsyncConnection, json_nids: Iterable[int]) -> None:
        """Deletes those of ``json_nids`` no queue entry refers to any more."""
        nids = list(set(json_nids))
        if not nids:
            return
        referenced = exists().where(queue.c.json_nid == queue_json.c.json_nid)
        await conn.execute(delete(queue_json).where(queue_json.c.json_nid.in_(nids), ~referenced))
