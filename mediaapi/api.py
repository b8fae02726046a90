"""The media API's interface for other components: the federation API
serves this server's media to other servers through it
(``/_matrix/federation/v1/media/download|thumbnail``).

In one process the implementation is ``MediaAPI.local_media`` itself; a
split deployment reaches the media API's HTTP port with
``mediaapi.client.HttpLocalMedia``. Failures are ``common.errors``
exceptions (``NotFound`` for unknown media).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class MediaContent:
    content_type: str
    # The upload's file name, when it had one.
    filename: str | None
    content: bytes


class LocalMediaAPI(Protocol):
    async def local_media_content(self, media_id: str) -> MediaContent:
        """Media uploaded to this server (never fetched from elsewhere)."""
        ...

    async def local_thumbnail_content(self, media_id: str, width: int, height: int,
                                      method: str) -> MediaContent:
        """A thumbnail of media uploaded to this server (or the original, as the spec allows)."""
        ...
