"""``LocalMediaAPI`` over HTTP, for a split deployment: the federation API
reads this server's media from the media API's own port through the
download and thumbnail endpoints, with ``allow_remote=false`` so that
nothing is fetched from elsewhere on another server's behalf."""

from __future__ import annotations

from email.message import Message
from urllib.parse import quote

import httpx

from common import errors
from mediaapi.api import MediaContent


def filename_from_disposition(header: str) -> str | None:
    """The file name of a Content-Disposition header (``filename*`` first)."""
    if not header:
        return None
    message = Message()
    message["content-disposition"] = header
    name = message.get_filename()
    return str(name) if name else None


class HttpLocalMedia:
    def __init__(self, address: str, server_name: str) -> None:
        self._base = f"http://{address}/_matrix/media/v3"
        self._server_name = server_name
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=5.0), trust_env=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def local_media_content(self, media_id: str) -> MediaContent:
        return await self._get(f"/download/{quote(self._server_name)}/{quote(media_id)}", {})

    async def local_thumbnail_content(self, media_id: str, width: int, height: int,
                                      method: str) -> MediaContent:
        return await self._get(f"/thumbnail/{quote(self._server_name)}/{quote(media_id)}",
                               {"width": width, "height": height, "method": method})

    async def _get(self, path: str, params: dict[str, str | int]) -> MediaContent:
        try:
            response = await self._client.get(self._base + path, params={**params, "allow_remote": "false"})
        except httpx.HTTPError as e:
            raise errors.Unavailable(f"the media API is unavailable: {e!r}") from None
        if response.status_code != 200:
            try:
                body = response.json()
                message, errcode = str(body.get("error", "")), str(body.get("errcode", ""))
            except ValueError:
                message, errcode = response.text[:200], ""
            if errcode == errors.NotFound.errcode:
                raise errors.NotFound(message)
            raise errors.MatrixError(message or f"HTTP {response.status_code}", http_status=response.status_code)
        return MediaContent(response.headers.get("content-type", "application/octet-stream"),
                            filename_from_disposition(response.headers.get("content-disposition", "")),
                            response.content)
