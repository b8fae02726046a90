"""Remote media downloads for the media repository's cache.

Spec: data/api/server-server/content_repository.yaml. ``GET
/_matrix/federation/v1/media/download/{mediaId}`` of the origin server
answers ``multipart/mixed``: a JSON part (metadata), then either the bytes
(with ``Content-Type`` and ``Content-Disposition``) or a ``Location``
header to fetch them from, which is followed here (plain HTTPS, a few
redirects at most, refusing private addresses unless the config allows
them, as for federation itself).

Errors reach the media API as: 404 M_NOT_FOUND when the origin has no such
media (or does not answer the endpoint), M_TOO_LARGE past ``max_bytes``,
502 when the origin cannot be reached or answers something unreadable.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from email.message import Message
from urllib.parse import quote, urljoin, urlsplit

import httpx
from myelin.federationapi.v1 import federationapi_pb2 as pb

from common import errors
from federationapi.client import FederationError, HttpResponseError
from federationapi.internal.context import FederationContext
from matrixlib.server_names import is_forbidden_address

logger = logging.getLogger(__name__)

V1 = "/_matrix/federation/v1"
DOWNLOAD_TIMEOUT_MS = 20_000
MAX_LOCATION_REDIRECTS = 5


@dataclass(frozen=True)
class MultipartPart:
    headers: dict[str, str]  # lower-case names
    body: bytes


def _param(header: str, name: str) -> str | None:
    message = Message()
    message["content-type"] = header
    value = message.get_param(name)
    return value if isinstance(value, str) else None


def parse_multipart_mixed(content_type: str, body: bytes) -> list[MultipartPart]:
    """The parts of a ``multipart/mixed`` body (RFC 2046); ``ValueError``
    when it is not one."""
    if not content_type.lower().startswith("multipart/"):
        raise ValueError(f"not multipart: {content_type!r}")
    boundary = _param(content_type, "boundary")
    if not boundary:
        raise ValueError("multipart without a boundary")
    delimiter = b"\r\n--" + boundary.encode()
    # The first delimiter may open the body, without the CRLF before it.
    pieces = (b"\r\n" + body).split(delimiter)
    parts: list[MultipartPart] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            return parts
        # Transport padding, then the CRLF that ends the delimiter line.
        _, crlf, rest = piece.partition(b"\r\n")
        if not crlf:
            raise ValueError("malformed delimiter line")
        if rest.startswith(b"\r\n"):
            raw_headers, content = b"", rest[2:]
        else:
            raw_headers, separator, content = rest.partition(b"\r\n\r\n")
            if not separator:
                raise ValueError("part without an end of headers")
        headers: dict[str, str] = {}
        for line in raw_headers.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        parts.append(MultipartPart(headers, content))
    raise ValueError("multipart body without a closing delimiter")


def filename_of(disposition: str) -> str:
    if not disposition:
        return ""
    message = Message()
    message["content-disposition"] = disposition
    name = message.get_filename()
    return str(name) if name else ""


async def _resolve_allowed(host: str, port: int, allow_private: bool) -> None:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise errors.MatrixError(f"cannot resolve {host}", http_status=502) from None
    addresses = {str(info[4][0]) for info in infos}
    if not allow_private and any(is_forbidden_address(a) for a in addresses):
        raise errors.MatrixError(f"media location {host} is a private address", http_status=502)


async def _follow_location(context: FederationContext, location: str, max_bytes: int) -> tuple[str, str, bytes]:
    """(content type, file name, bytes) from a Location the origin gave."""
    allow_private = context.config.federation_allow_private_addresses
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                 verify=context.config.federation_verify_tls, timeout=30.0) as http:
        url = location
        for _ in range(MAX_LOCATION_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise errors.MatrixError("media location is not an http(s) URL", http_status=502)
            await _resolve_allowed(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   allow_private)
            try:
                async with http.stream("GET", url) as response:
                    if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise errors.MatrixError(f"media location answered {response.status_code}",
                                                 http_status=502)
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise errors.TooLarge("Remote media is too large", http_status=502)
                        chunks.append(chunk)
                    return (response.headers.get("content-type", ""),
                            filename_of(response.headers.get("content-disposition", "")), b"".join(chunks))
            except httpx.HTTPError as e:
                raise errors.MatrixError(f"cannot fetch the media location: {e!r}", http_status=502) from None
    raise errors.MatrixError("too many redirects from the media location", http_status=502)


async def download_media(context: FederationContext, req: pb.DownloadMediaRequest) -> pb.DownloadMediaResponse:
    if req.server_name == context.server_name:
        raise errors.InvalidParam("The media is local: ask the media API")
    max_bytes = req.max_bytes or 50 * 1024 * 1024
    path = f"{V1}/media/download/{quote(req.media_id, safe='')}"
    try:
        response = await context.client.get_raw(req.server_name, path, query={"timeout_ms": DOWNLOAD_TIMEOUT_MS})
    except HttpResponseError as e:
        logger.info("media %s from %s: HTTP %s", req.media_id, req.server_name, e.status)
        if e.status in (404, 400, 405):
            raise errors.NotFound("Remote media not found") from None
        raise errors.MatrixError(f"{req.server_name} answered HTTP {e.status}", http_status=502) from None
    except FederationError as e:
        logger.info("media %s: %s cannot be reached: %s", req.media_id, req.server_name, e)
        raise errors.MatrixError(f"{req.server_name} cannot be reached", http_status=502) from None
    try:
        parts = parse_multipart_mixed(response.headers.get("content-type", ""), response.body)
    except ValueError as e:
        raise errors.MatrixError(f"unreadable media answer from {req.server_name}: {e}", http_status=502) from None
    if len(parts) < 2:
        raise errors.MatrixError(f"media answer from {req.server_name} has {len(parts)} parts", http_status=502)
    media = parts[1]
    location = media.headers.get("location")
    if location:
        content_type, filename, content = await _follow_location(context, location, max_bytes)
    else:
        content_type = media.headers.get("content-type", "")
        filename, content = filename_of(media.headers.get("content-disposition", "")), media.body
    if len(content) > max_bytes:
        raise errors.TooLarge("Remote media is too large", http_status=502)
    return pb.DownloadMediaResponse(content_type=content_type or "application/octet-stream", filename=filename,
                                    content=content)
