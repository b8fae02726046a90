"""The media API's storage facade: every method is one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from common.storage import Database
from mediaapi.storage.tables.media import MediaRow, MediaTable, media
from mediaapi.storage.tables.thumbnails import ThumbnailRow, ThumbnailsTable, thumbnails

__all__ = ["MediaDatabase", "MediaRow", "ThumbnailRow"]


class MediaDatabase:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._media = MediaTable()
        self._thumbnails = ThumbnailsTable()

    async def get_media(self, origin: str, media_id: str) -> MediaRow | None:
        async with self.db.connect() as conn:
            return await self._media.select(conn, origin, media_id)

    async def insert_media(self, row: MediaRow) -> bool:
        """Adds the row; False (and nothing changed) when the URI is already known."""
        async with self.db.transaction() as conn:
            result = await conn.execute(
                self.db.insert_or_ignore(media, asdict(row), ["media_origin", "media_id"]))
            return bool(result.rowcount)

    async def set_content(self, origin: str, media_id: str, *, content_type: str, size_bytes: int,
                          upload_name: str | None, store_key: str, sha256: str) -> bool:
        """Fills in a created ID's content; False when it already has content."""
        async with self.db.transaction() as conn:
            return await self._media.set_content(
                conn, origin, media_id, content_type=content_type, size_bytes=size_bytes,
                upload_name=upload_name, store_key=store_key, sha256=sha256)

    async def count_pending_uploads(self, user_id: str, now_ts: int) -> int:
        async with self.db.connect() as conn:
            return await self._media.count_pending(conn, user_id, now_ts)

    async def get_thumbnails(self, origin: str, media_id: str) -> list[ThumbnailRow]:
        async with self.db.connect() as conn:
            return await self._thumbnails.select_for_media(conn, origin, media_id)

    async def store_thumbnails(self, origin: str, media_id: str, rows: Sequence[ThumbnailRow], ts: int) -> None:
        """Records the thumbnails made (possibly none) and that they were made."""
        async with self.db.transaction() as conn:
            if rows:
                await conn.execute(self.db.insert_or_ignore(
                    thumbnails, [asdict(row) for row in rows],
                    ["media_origin", "media_id", "target_width", "target_height", "method"]))
            await self._media.set_thumbnailed(conn, origin, media_id, ts)

    async def close(self) -> None:
        await self.db.close()
