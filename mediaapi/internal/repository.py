"""The media repository: what every media endpoint does, below HTTP.

Local uploads (at once, or created first and uploaded later), downloads
(local, or remote ones fetched over federation once and then served from
the cache), thumbnails made once per media item at the configured sizes,
and the reads the federation API serves to other servers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from myelin.federationapi.v1 import federationapi_pb2 as fed_pb

from common import errors
from common.config import Config
from mediaapi.api import MediaContent
from mediaapi.headers import sanitize_content_type, sanitize_filename
from mediaapi.internal.ids import check_mxc_parts, mxc_uri, new_media_id
from mediaapi.internal.thumbnails import (
    ImageTooLarge,
    ThumbnailError,
    can_thumbnail,
    choose_thumbnail,
    make_thumbnails,
)
from mediaapi.storage.database import MediaDatabase, MediaRow, ThumbnailRow
from mediaapi.storage.store import MediaStore, new_key, one_chunk, read_all

logger = logging.getLogger(__name__)

# A created media ID can be uploaded to for this long (the spec's recommended default).
UNUSED_MEDIA_ID_LIFETIME_MS = 24 * 60 * 60 * 1000
# How many created, not yet uploaded IDs a user may hold at once.
MAX_PENDING_UPLOADS = 10
DEFAULT_DOWNLOAD_TIMEOUT_MS = 20_000
MAX_DOWNLOAD_TIMEOUT_MS = 60_000
_PENDING_POLL_SECONDS = 0.2


class NotYetUploaded(errors.MatrixError):
    errcode = "M_NOT_YET_UPLOADED"
    http_status = 504


class CannotOverwriteMedia(errors.MatrixError):
    errcode = "M_CANNOT_OVERWRITE_MEDIA"
    http_status = 409


def cannot_thumbnail() -> errors.MatrixError:
    return errors.MatrixError("Cannot generate thumbnails for the requested content", http_status=400)


class RemoteMediaFetcher(Protocol):
    """The part of the federation API's interface (``FederationInternalAPI``) used here."""

    async def download_media(self, req: fed_pb.DownloadMediaRequest) -> fed_pb.DownloadMediaResponse: ...


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class ServedMedia:
    """What a download or thumbnail request is answered with: the bytes are
    read from the store under ``store_key``."""

    content_type: str
    filename: str | None
    size_bytes: int
    store_key: str


class MediaRepository:
    def __init__(self, config: Config, database: MediaDatabase, store: MediaStore,
                 federation: RemoteMediaFetcher | None = None, *,
                 clock: Callable[[], int] = now_ms) -> None:
        self.server_name = config.server_name
        self.settings = config.media
        self.database = database
        self.store = store
        self.federation = federation
        self._clock = clock
        self._locks: dict[tuple[str, ...], tuple[asyncio.Lock, int]] = {}
        # How often thumbnails were made and remote media fetched (tests, metrics).
        self.thumbnail_runs = 0
        self.remote_fetches = 0

    # -- uploads ----------------------------------------------------------------------

    async def upload(self, user_id: str, content_type: str | None, filename: str | None,
                     chunks: AsyncIterable[bytes]) -> str:
        """Stores an upload and answers its mxc:// URI; ``TooLarge`` (nothing
        kept) past the configured limit."""
        key = new_key()
        blob = await self.store.put(key, chunks, max_bytes=self.settings.max_upload_size_bytes)
        media_id = new_media_id()
        row = MediaRow(self.server_name, media_id, sanitize_content_type(content_type), blob.size_bytes,
                       sanitize_filename(filename), user_id, self._clock(), key, blob.sha256, None, None)
        try:
            await self.database.insert_media(row)
        except BaseException:
            await self.store.delete(key)
            raise
        return mxc_uri(self.server_name, media_id)

    async def create(self, user_id: str) -> tuple[str, int]:
        """A media ID to upload to later: (mxc:// URI, when it expires in ms)."""
        now = self._clock()
        if await self.database.count_pending_uploads(user_id, now) >= MAX_PENDING_UPLOADS:
            raise errors.LimitExceeded("Too many pending media uploads", retry_after_ms=60_000)
        expires = now + UNUSED_MEDIA_ID_LIFETIME_MS
        media_id = new_media_id()
        await self.database.insert_media(MediaRow(self.server_name, media_id, "", None, None, user_id, now,
                                                  None, None, expires, None))
        return mxc_uri(self.server_name, media_id), expires

    async def upload_to(self, user_id: str, server_name: str, media_id: str, content_type: str | None,
                        filename: str | None, chunks: AsyncIterable[bytes]) -> None:
        """The content of an ID from ``create``: only its creator may upload,
        once, before it expires."""
        check_mxc_parts(server_name, media_id)
        row = await self.database.get_media(server_name, media_id) if server_name == self.server_name else None
        if row is None or (not row.uploaded and (row.unused_expires_ts or 0) <= self._clock()):
            raise errors.NotFound("Unknown media ID")
        if row.user_id != user_id:
            raise errors.Forbidden("This media ID was created by another user")
        if row.uploaded:
            raise CannotOverwriteMedia("Media already uploaded")
        key = new_key()
        blob = await self.store.put(key, chunks, max_bytes=self.settings.max_upload_size_bytes)
        try:
            stored = await self.database.set_content(
                server_name, media_id, content_type=sanitize_content_type(content_type),
                size_bytes=blob.size_bytes, upload_name=sanitize_filename(filename), store_key=key,
                sha256=blob.sha256)
        except BaseException:
            await self.store.delete(key)
            raise
        if not stored:
            await self.store.delete(key)
            raise CannotOverwriteMedia("Media already uploaded")

    # -- downloads --------------------------------------------------------------------

    async def download(self, server_name: str, media_id: str, *, allow_remote: bool = True,
                       timeout_ms: int = DEFAULT_DOWNLOAD_TIMEOUT_MS) -> ServedMedia:
        row = await self._media(server_name, media_id, allow_remote=allow_remote, timeout_ms=timeout_ms)
        assert row.store_key is not None and row.size_bytes is not None
        return ServedMedia(row.content_type, row.upload_name, row.size_bytes, row.store_key)

    async def thumbnail(self, server_name: str, media_id: str, width: int, height: int, method: str, *,
                        allow_remote: bool = True, timeout_ms: int = DEFAULT_DOWNLOAD_TIMEOUT_MS) -> ServedMedia:
        """The stored thumbnail that answers the request (see
        ``choose_thumbnail``), or the original when none is big enough."""
        if method not in ("crop", "scale"):
            raise errors.InvalidParam("method must be crop or scale")
        if width < 1 or height < 1:
            raise errors.InvalidParam("width and height must be positive")
        row = await self._media(server_name, media_id, allow_remote=allow_remote, timeout_ms=timeout_ms)
        assert row.store_key is not None and row.size_bytes is not None
        if not can_thumbnail(row.content_type):
            raise cannot_thumbnail()
        chosen = choose_thumbnail(await self._thumbnails_of(row), width, height, method)
        if chosen is None:
            return ServedMedia(row.content_type, row.upload_name, row.size_bytes, row.store_key)
        return ServedMedia(chosen.content_type, None, chosen.size_bytes, chosen.store_key)

    async def read(self, served: ServedMedia) -> bytes:
        return await read_all(self.store, served.store_key)

    def chunks(self, served: ServedMedia) -> AsyncIterator[bytes]:
        return self.store.get(served.store_key)

    # -- LocalMediaAPI: what other servers may fetch --------------------------------

    async def local_media_content(self, media_id: str) -> MediaContent:
        served = await self.download(self.server_name, media_id, allow_remote=False)
        return MediaContent(served.content_type, served.filename, await self.read(served))

    async def local_thumbnail_content(self, media_id: str, width: int, height: int,
                                      method: str) -> MediaContent:
        served = await self.thumbnail(self.server_name, media_id, width, height, method, allow_remote=False)
        return MediaContent(served.content_type, served.filename, await self.read(served))

    # -- internals ----------------------------------------------------------------------

    @asynccontextmanager
    async def _locked(self, *key: str) -> AsyncIterator[None]:
        """One task at a time per key in this process (one fetch, one thumbnailing)."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def _media(self, server_name: str, media_id: str, *, allow_remote: bool, timeout_ms: int) -> MediaRow:
        check_mxc_parts(server_name, media_id)
        if server_name != self.server_name:
            if not allow_remote:
                raise errors.NotFound("Remote media is not served here (allow_remote=false)")
            return await self._remote_media(server_name, media_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0, min(timeout_ms, MAX_DOWNLOAD_TIMEOUT_MS)) / 1000
        while True:
            row = await self.database.get_media(server_name, media_id)
            if row is None or (not row.uploaded and (row.unused_expires_ts or 0) <= self._clock()):
                raise errors.NotFound("Media not found")
            if row.uploaded:
                return row
            if loop.time() >= deadline:
                raise NotYetUploaded("Content has not yet been uploaded")
            await asyncio.sleep(_PENDING_POLL_SECONDS)

    async def _remote_media(self, origin: str, media_id: str) -> MediaRow:
        """From the cache, or fetched from the origin over federation and cached."""
        row = await self.database.get_media(origin, media_id)
        if row is not None and row.uploaded:
            return row
        if self.federation is None:
            raise errors.NotFound("Media not found (federation is off)")
        async with self._locked("remote", origin, media_id):
            row = await self.database.get_media(origin, media_id)
            if row is not None and row.uploaded:
                return row
            limit = self.settings.max_upload_size_bytes
            try:
                response = await self.federation.download_media(
                    fed_pb.DownloadMediaRequest(server_name=origin, media_id=media_id, max_bytes=limit))
            except (errors.NotFound, errors.Unrecognized):
                raise errors.NotFound("Media not found") from None
            except errors.TooLarge:
                raise errors.TooLarge("Remote content is too large", http_status=502) from None
            except errors.MatrixError as e:
                logger.info("could not fetch mxc://%s/%s: %s", origin, media_id, e)
                raise errors.MatrixError(f"Could not fetch the media from {origin}", http_status=502) from None
            self.remote_fetches += 1
            if len(response.content) > limit:
                raise errors.TooLarge("Remote content is too large", http_status=502)
            key = new_key()
            blob = await self.store.put(key, one_chunk(response.content))
            row = MediaRow(origin, media_id, sanitize_content_type(response.content_type), blob.size_bytes,
                           sanitize_filename(response.filename), None, self._clock(), key, blob.sha256,
                           None, None)
            if not await self.database.insert_media(row):
                # Another instance cached it first: keep theirs.
                await self.store.delete(key)
                cached = await self.database.get_media(origin, media_id)
                if cached is None or not cached.uploaded:
                    raise errors.MatrixError("Remote media vanished while caching", http_status=502)
                return cached
            return row

    async def _thumbnails_of(self, row: MediaRow) -> list[ThumbnailRow]:
        """The media's thumbnails, made now (once) if they were not yet."""
        if row.thumbnailed_ts is not None:
            return await self.database.get_thumbnails(row.media_origin, row.media_id)
        async with self._locked("thumbnails", row.media_origin, row.media_id):
            fresh = await self.database.get_media(row.media_origin, row.media_id)
            if fresh is not None and fresh.thumbnailed_ts is not None:
                return await self.database.get_thumbnails(row.media_origin, row.media_id)
            assert row.store_key is not None
            data = await read_all(self.store, row.store_key)
            try:
                made = await asyncio.to_thread(make_thumbnails, data, self.settings.thumbnail_sizes,
                                               max_pixels=self.settings.max_thumbnail_source_pixels)
            except ImageTooLarge:
                raise errors.TooLarge("The image is too large to thumbnail") from None
            except ThumbnailError as e:
                logger.info("no thumbnails of mxc://%s/%s: %s", row.media_origin, row.media_id, e)
                raise cannot_thumbnail() from None
            self.thumbnail_runs += 1
            now = self._clock()
            rows: list[ThumbnailRow] = []
            try:
                for thumb in made:
                    key = new_key()
                    blob = await self.store.put(key, one_chunk(thumb.data))
                    rows.append(ThumbnailRow(row.media_origin, row.media_id, thumb.size.width, thumb.size.height,
                                             thumb.size.method, thumb.width, thumb.height, thumb.content_type,
                                             blob.size_bytes, key, now))
                await self.database.store_thumbnails(row.media_origin, row.media_id, rows, now)
            except BaseException:
                for made_row in rows:
                    await self.store.delete(made_row.store_key)
                raise
            stored = await self.database.get_thumbnails(row.media_origin, row.media_id)
            # Another instance may have stored its own first; ours are then unused.
            kept = {t.store_key for t in stored}
            for made_row in rows:
                if made_row.store_key not in kept:
                    await self.store.delete(made_row.store_key)
            return stored
