"""The headers media is served with, so that nothing uploaded runs as a page.

``Content-Disposition`` is ``inline`` only for the content types the spec
lists as safe to show inline (content repository, "Serving inline
content"), ``attachment`` for everything else, with the file name encoded
per RFC 6266 / RFC 5987. Every response also carries a sandboxing
``Content-Security-Policy``, ``X-Content-Type-Options: nosniff`` and
``Cross-Origin-Resource-Policy: cross-origin``.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from common.http import CORS_HEADERS

OCTET_STREAM = "application/octet-stream"

INLINE_CONTENT_TYPES = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav",
    "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

CONTENT_SECURITY_POLICY = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
    "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
)

_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
_CONTENT_TYPE = re.compile(
    rf'^{_TOKEN}/{_TOKEN}(?:\s*;\s*{_TOKEN}=(?:{_TOKEN}|"[^"\\\x00-\x1f\x7f]*"))*$')
# RFC 5987 attr-char: what may stand unescaped in filename*.
_ATTR_CHARS = "!#$&+-.^_`|~"
_PLAIN_FILENAME = re.compile(r'^[\x20-\x7e]+$')
MAX_FILENAME_CHARS = 255


def sanitize_content_type(value: str | None) -> str:
    """The content type as given when it is well formed, else octet-stream
    (so nothing odd, such as a line break, reaches a header)."""
    value = (value or "").strip()
    if len(value) > 255 or not _CONTENT_TYPE.fullmatch(value):
        return OCTET_STREAM
    return value


def sanitize_filename(value: str | None) -> str | None:
    """An upload's file name as stored: no control characters, bounded length; None when empty."""
    if not value:
        return None
    cleaned = "".join(ch for ch in value if ch.isprintable())[:MAX_FILENAME_CHARS]
    return cleaned or None


def essence(content_type: str) -> str:
    """``type/subtype`` in lower case, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def content_disposition(content_type: str, filename: str | None) -> str:
    disposition = "inline" if essence(content_type) in INLINE_CONTENT_TYPES else "attachment"
    if not filename:
        return disposition
    if _PLAIN_FILENAME.fullmatch(filename) and '"' not in filename and "\\" not in filename:
        return f'{disposition}; filename="{filename}"'
    return f"{disposition}; filename*=utf-8''{quote(filename, safe=_ATTR_CHARS)}"


def media_headers(content_type: str, filename: str | None) -> dict[str, str]:
    """Every header of a media response except its length."""
    content_type = sanitize_content_type(content_type)
    return {
        **CORS_HEADERS,
        "Content-Type": content_type,
        "Content-Disposition": content_disposition(content_type, filename),
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
