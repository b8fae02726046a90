"""mediaapi_media: one row per mxc:// URI this server has content for (its
own uploads and cached remote media), or has handed out for a later upload."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Table, Text, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mediaapi.storage.tables import METADATA

media = Table(
    "mediaapi_media",
    METADATA,
    Column("media_origin", Text, primary_key=True),
    Column("media_id", Text, primary_key=True),
    Column("content_type", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=True),
    Column("upload_name", Text, nullable=True),
    Column("user_id", Text, nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    Column("store_key", Text, nullable=True),
    Column("sha256", Text, nullable=True),
    Column("unused_expires_ts", BigInteger, nullable=True),
    Column("thumbnailed_ts", BigInteger, nullable=True),
)


@dataclass(frozen=True)
class MediaRow:
    media_origin: str
    media_id: str
    content_type: str
    size_bytes: int | None
    upload_name: str | None
    user_id: str | None
    created_ts: int
    store_key: str | None
    sha256: str | None
    unused_expires_ts: int | None
    thumbnailed_ts: int | None

    @property
    def uploaded(self) -> bool:
        return self.store_key is not None


class MediaTable:
    async def select(self, conn: AsyncConnection, origin: str, media_id: str) -> MediaRow | None:
        row = (await conn.execute(select(media).where(
            and_(media.c.media_origin == origin, media.c.media_id == media_id)))).first()
        return None if row is None else MediaRow(**row._mapping)

    async def insert(self, conn: AsyncConnection, row: MediaRow) -> None:
        await conn.execute(media.insert().values(**row.__dict__))

    async def set_content(self, conn: AsyncConnection, origin: str, media_id: str, *, content_type: str,
                          size_bytes: int, upload_name: str | None, store_key: str, sha256: str) -> bool:
        """Fills in a pending row's content; False when it already had some."""
        result = await conn.execute(update(media).where(
            and_(media.c.media_origin == origin, media.c.media_id == media_id, media.c.store_key.is_(None))
        ).values(content_type=content_type, size_bytes=size_bytes, upload_name=upload_name,
                 store_key=store_key, sha256=sha256, unused_expires_ts=None))
        return bool(result.rowcount)

    async def set_thumbnailed(self, conn: AsyncConnection, origin: str, media_id: str, ts: int) -> None:
        await conn.execute(update(media).where(
            and_(media.c.media_origin == origin, media.c.media_id == media_id)).values(thumbnailed_ts=ts))

    async def count_pending(self, conn: AsyncConnection, user_id: str, now_ts: int) -> int:
        """The user's created, not yet uploaded, unexpired media IDs."""
        return int(await conn.scalar(select(func.count()).select_from(media).where(and_(
            media.c.user_id == user_id, media.c.store_key.is_(None), media.c.unused_expires_ts > now_ts))) or 0)
