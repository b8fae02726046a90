"""mediaapi_thumbnails: the thumbnails made of a media item, one per
configured size and method."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Integer, Table, Text, and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from mediaapi.storage.tables import METADATA

thumbnails = Table(
    "mediaapi_thumbnails",
    METADATA,
    Column("media_origin", Text, primary_key=True),
    Column("media_id", Text, primary_key=True),
    Column("target_width", Integer, primary_key=True),
    Column("target_height", Integer, primary_key=True),
    Column("method", Text, primary_key=True),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("store_key", Text, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class ThumbnailRow:
    media_origin: str
    media_id: str
    target_width: int
    target_height: int
    method: str
    width: int
    height: int
    content_type: str
    size_bytes: int
    store_key: str
    created_ts: int


class ThumbnailsTable:
    async def select_for_media(self, conn: AsyncConnection, origin: str, media_id: str) -> list[ThumbnailRow]:
        rows = (await conn.execute(select(thumbnails).where(
            and_(thumbnails.c.media_origin == origin, thumbnails.c.media_id == media_id)))).all()
        return [ThumbnailRow(**row._mapping) for row in rows]
