"""URL previews (``/preview_url``): the page's OpenGraph data.

The page is fetched by the server, so a client could use it to reach what
only the server can: every host is resolved first and the request refused
(403 M_FORBIDDEN) when any of its addresses is private, loopback,
link-local, multicast or reserved, unless the config allows private
addresses. The connection then goes to the checked address itself (with
the name in ``Host`` and the TLS SNI), so a second DNS answer cannot swap
in another; each redirect is checked the same way. Bodies are read up to
``url_preview_max_bytes`` within ``FETCH_TIMEOUT_SECONDS``.

The result has the page's ``og:*`` meta tags, ``og:title`` from
``<title>`` and ``og:description`` from the description meta tag when the
page has no OpenGraph ones, and its ``og:image`` fetched (same checks),
stored as media and given as an mxc:// URI with ``matrix:image:size``.
Results are cached for an hour.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from common import errors
from common.config import MediaConfig
from matrixlib.server_names import is_forbidden_address
from mediaapi.headers import essence
from mediaapi.internal.repository import MediaRepository
from mediaapi.storage.store import one_chunk

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 10.0
MAX_REDIRECTS = 5
CACHE_SECONDS = 3600.0
MAX_CACHED_PREVIEWS = 1000
USER_AGENT = "Myelin URL preview"
_REDIRECTS = (301, 302, 303, 307, 308)

AddressLookup = Callable[[str, int], Awaitable[list[str]]]


async def system_lookup(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class FetchedPage:
    url: str
    status: int
    content_type: str
    body: bytes
    # The body was cut at the size limit.
    truncated: bool


class _OpenGraphParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.description: str | None = None
        self.title_parts: list[str] = []
        self._in_title = False
        self.title_done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            values = {name.lower(): value or "" for name, value in attrs}
            key = values.get("property") or values.get("name") or ""
            content = values.get("content")
            if content is None:
                return
            if key.startswith("og:") and key not in self.og:
                self.og[key] = content
            elif key.lower() == "description" and self.description is None:
                self.description = content
        elif tag == "title" and not self.title_done:
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self.title_done = True

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)


def parse_open_graph(html: str) -> dict[str, Any]:
    """The OpenGraph data of a page, with the fallbacks described above (no I/O)."""
    parser = _OpenGraphParser()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):
        pass  # a broken page: whatever was read so far
    result: dict[str, Any] = dict(parser.og)
    title = " ".join("".join(parser.title_parts).split())
    if "og:title" not in result and title:
        result["og:title"] = title
    if "og:description" not in result and parser.description:
        result["og:description"] = parser.description
    return result


def _charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "charset" and value:
            return value.strip().strip('"')
    return "utf-8"


class UrlPreviewer:
    def __init__(self, settings: MediaConfig, repository: MediaRepository, *,
                 address_lookup: AddressLookup = system_lookup,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.repository = repository
        # Replaceable in tests (a public-looking name that resolves to a loopback address).
        self.address_lookup = address_lookup
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                         timeout=httpx.Timeout(FETCH_TIMEOUT_SECONDS))

    async def close(self) -> None:
        await self._client.aclose()

    async def preview(self, url: str, user_id: str) -> dict[str, Any]:
        cached = self._cache.get(url)
        if cached is not None and cached[0] > self._clock():
            return dict(cached[1])
        try:
            result = await asyncio.wait_for(self._preview(url, user_id), FETCH_TIMEOUT_SECONDS * 2)
        except TimeoutError:
            raise errors.MatrixError("Timed out fetching the URL", http_status=504) from None
        self._cache[url] = (self._clock() + CACHE_SECONDS, result)
        while len(self._cache) > MAX_CACHED_PREVIEWS:
            self._cache.popitem(last=False)
        return dict(result)

    async def _preview(self, url: str, user_id: str) -> dict[str, Any]:
        page = await self.fetch(url, self.settings.url_preview_max_bytes)
        if page.status != 200:
            raise errors.MatrixError(f"The URL answered HTTP {page.status}", http_status=502)
        kind = essence(page.content_type)
        if kind.startswith("image/"):
            result: dict[str, Any] = {}
            if not page.truncated:
                result.update(await self._store_image(page, user_id))
            return result
        if kind not in ("text/html", "application/xhtml+xml"):
            return {}
        html = page.body.decode(_charset(page.content_type), errors="replace") \
            if _known_codec(_charset(page.content_type)) else page.body.decode("utf-8", errors="replace")
        result = await asyncio.to_thread(parse_open_graph, html)
        image_url = result.pop("og:image", None)
        for key in ("og:image:width", "og:image:height", "og:image:type", "og:image:secure_url"):
            result.pop(key, None)
        if isinstance(image_url, str) and image_url:
            try:
                image = await self.fetch(urljoin(page.url, image_url), self.settings.url_preview_max_bytes)
                if image.status == 200 and not image.truncated and essence(image.content_type).startswith("image/"):
                    result.update(await self._store_image(image, user_id))
            except errors.MatrixError as e:
                logger.info("no preview image from %s: %s", image_url, e)
        return result

    async def _store_image(self, image: FetchedPage, user_id: str) -> dict[str, Any]:
        content_uri = await self.repository.upload(user_id, image.content_type, None, one_chunk(image.body))
        result: dict[str, Any] = {"og:image": content_uri, "og:image:type": essence(image.content_type),
                                  "matrix:image:size": len(image.body)}
        size = await asyncio.to_thread(_image_size, image.body)
        if size is not None:
            result["og:image:width"], result["og:image:height"] = size
        return result

    async def fetch(self, url: str, max_bytes: int) -> FetchedPage:
        """GETs ``url`` (following redirects), refusing private addresses."""
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise errors.InvalidParam("Only http and https URLs can be previewed")
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                raise errors.InvalidParam("Bad port in URL") from None
            host = parts.hostname
            addresses = await self.address_lookup(host, port)
            if not addresses:
                raise errors.MatrixError(f"Could not resolve {host}", http_status=502)
            if not self.settings.url_preview_allow_private_addresses and any(
                    is_forbidden_address(a) for a in addresses):
                raise errors.Forbidden("URL previews of private or local addresses are not allowed")
            address = addresses[0]
            url_host = f"[{address}]" if ":" in address else address
            target = f"{parts.scheme}://{url_host}:{port}{parts.path or '/'}" + (
                f"?{parts.query}" if parts.query else "")
            host_header = parts.netloc.rpartition("@")[2]
            request = self._client.build_request(
                "GET", target, headers={"Host": host_header, "User-Agent": USER_AGENT,
                                        "Accept": "text/html, image/*;q=0.9, */*;q=0.5"},
                extensions={"sni_hostname": host})
            try:
                response = await self._client.send(request, stream=True)
            except httpx.HTTPError as e:
                raise errors.MatrixError(f"Could not fetch the URL: {e!r}", http_status=502) from None
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                chunks: list[bytes] = []
                size = 0
                truncated = False
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > max_bytes:
                        truncated = True
                        break
                body = b"".join(chunks)[:max_bytes]
            except httpx.HTTPError as e:
                raise errors.MatrixError(f"Could not fetch the URL: {e!r}", http_status=502) from None
            finally:
                await response.aclose()
            return FetchedPage(url, response.status_code, response.headers.get("content-type", ""), body,
                               truncated)
        raise errors.MatrixError("Too many redirects", http_status=502)


def _known_codec(name: str) -> bool:
    import codecs

    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _image_size(data: bytes) -> tuple[int, int] | None:
    # Pillow (~3 MB resident) is loaded by the first preview of an image, not at start.
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
