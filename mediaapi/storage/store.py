"""Where media bytes live: a ``MediaStore`` maps an opaque key to a blob.

``LocalDiskStore`` (the default) keeps each blob in a file under
``<data_dir>/media``; another store (S3-compatible, say) implements the same
Protocol. Keys are chosen by the repository (``new_key``): lowercase hex
only, so a key can never name a path outside the store.

Writes are streamed: ``put`` consumes an async iterator of chunks, stops
with ``TooLarge`` as soon as the blob passes ``max_bytes`` (keeping
nothing), and the blob becomes visible only once complete (a temporary file
renamed into place), so a reader never sees half an upload.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from common import errors

READ_CHUNK_BYTES = 256 * 1024
_KEY = re.compile(r"^[0-9a-f]{32}$")


def new_key() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class StoredBlob:
    size_bytes: int
    sha256: str


class BlobNotFound(Exception):
    """The store has nothing under the key."""


class MediaStore(Protocol):
    async def put(self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None) -> StoredBlob:
        """Stores the chunks under ``key``; ``errors.TooLarge`` (nothing kept) past ``max_bytes``."""
        ...

    def get(self, key: str) -> AsyncIterator[bytes]:
        """The blob's bytes in chunks; raises ``BlobNotFound`` when iterated if there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Removes the blob; no error when there is none."""
        ...


async def read_all(store: MediaStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.get(key)])


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


class LocalDiskStore:
    """Blobs as files: ``<root>/ab/cd/abcd...``, written to a temporary file then renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a media store key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None) -> StoredBlob:
        final = self.path_of(key)
        await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
        temp = final.with_name(f".{key}.{secrets.token_hex(4)}.tmp")
        digest = hashlib.sha256()
        size = 0
        handle: BinaryIO = await asyncio.to_thread(open, temp, "xb")
        try:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise errors.TooLarge(f"Content is larger than the limit of {max_bytes} bytes")
                    digest.update(chunk)
                    await asyncio.to_thread(handle.write, chunk)
                await asyncio.to_thread(_flush_and_sync, handle)
            finally:
                await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, temp, final)
        except BaseException:
            await asyncio.to_thread(temp.unlink, missing_ok=True)
            raise
        return StoredBlob(size, digest.hexdigest())

    async def get(self, key: str) -> AsyncIterator[bytes]:
        path = self.path_of(key)
        try:
            handle: BinaryIO = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        try:
            while chunk := await asyncio.to_thread(handle.read, READ_CHUNK_BYTES):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_of(key).unlink, missing_ok=True)


def _flush_and_sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
