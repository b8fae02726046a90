"""Pure pieces of the media API: response headers, thumbnail choice, the
OpenGraph parser, and the local disk store's all-or-nothing writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common import errors
from mediaapi.client import filename_from_disposition
from mediaapi.headers import content_disposition, sanitize_content_type, sanitize_filename
from mediaapi.internal.ids import check_mxc_parts, is_valid_media_id, new_media_id
from mediaapi.internal.preview import parse_open_graph
from mediaapi.internal.thumbnails import choose_thumbnail
from mediaapi.storage.store import BlobNotFound, LocalDiskStore, new_key, read_all
from mediaapi.storage.tables.thumbnails import ThumbnailRow


@pytest.mark.parametrize(("content_type", "filename", "expected"), [
    ("image/png", "cat.png", 'inline; filename="cat.png"'),
    ("IMAGE/PNG; x=1", None, "inline"),
    ("text/html", "a.html", 'attachment; filename="a.html"'),
    ("image/svg+xml", "a.svg", 'attachment; filename="a.svg"'),
    ("application/pdf", 'we"ird\\.pdf', "attachment; filename*=utf-8''we%22ird%5C.pdf"),
    ("text/plain", "line\r\nSet-Cookie: x", "inline; filename*=utf-8''line%0D%0ASet-Cookie%3A%20x"),
    ("text/plain", "日本.txt", "inline; filename*=utf-8''%E6%97%A5%E6%9C%AC.txt"),
])
def test_content_disposition(content_type: str, filename: str | None, expected: str) -> None:
    assert content_disposition(content_type, filename) == expected
    # What is sent can be read back.
    assert filename_from_disposition(expected) == filename


def test_content_types_and_filenames_are_sanitised() -> None:
    assert sanitize_content_type("text/plain; charset=utf-8") == "text/plain; charset=utf-8"
    assert sanitize_content_type('text/plain; charset="utf-8"') == 'text/plain; charset="utf-8"'
    for bad in (None, "", "text", "text/html\r\nX-Evil: 1", "a/b; c", "x" * 300 + "/y"):
        assert sanitize_content_type(bad) == "application/octet-stream"
    assert sanitize_filename("a\nb\x00c.txt") == "abc.txt"
    assert sanitize_filename("") is None
    assert sanitize_filename("\n") is None


def test_media_ids() -> None:
    assert all(is_valid_media_id(new_media_id()) for _ in range(50))
    for bad in ("", "..", "a/b", "a.b", "%2e", "a b"):
        assert not is_valid_media_id(bad)
        with pytest.raises(errors.NotFound):
            check_mxc_parts("example.org", bad)
    with pytest.raises(errors.NotFound):
        check_mxc_parts("../etc", "abc")
    check_mxc_parts("example.org:8448", "abc_-D9")


def _row(width: int, height: int, method: str) -> ThumbnailRow:
    return ThumbnailRow("s", "m", width, height, method, width, height, "image/png", 1, new_key(), 0)


def test_choose_thumbnail_never_smaller_than_asked() -> None:
    rows = [_row(32, 32, "crop"), _row(96, 96, "crop"), _row(320, 160, "scale"), _row(640, 320, "scale"),
            _row(800, 400, "scale")]
    pick = choose_thumbnail
    assert (pick(rows, 32, 32, "crop").width, pick(rows, 33, 10, "crop").width) == (32, 96)  # type: ignore[union-attr]
    assert pick(rows, 97, 97, "crop") is None  # the original answers
    assert pick(rows, 100, 100, "scale").width == 320  # type: ignore[union-attr]
    assert pick(rows, 321, 100, "scale").width == 320  # type: ignore[union-attr]  # height covers
    assert pick(rows, 700, 350, "scale").width == 800  # type: ignore[union-attr]
    assert pick(rows, 801, 401, "scale") is None
    assert pick([_row(32, 32, "crop")], 10, 10, "scale") is None


def test_open_graph_parsing() -> None:
    html = """<html><head><title>T</title><meta property="og:title" content="OG T">
    <meta property="og:title" content="second ignored"><meta name="description" content="D">
    <meta property="og:url" content="https://x/"></head><body><title>not this</title></body></html>"""
    assert parse_open_graph(html) == {"og:title": "OG T", "og:url": "https://x/", "og:description": "D"}
    assert parse_open_graph("<title>unclosed") == {"og:title": "unclosed"}
    assert parse_open_graph("<<<>>><meta content>&#xfffffff;") == {}


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_local_disk_store(tmp_path: Path) -> None:
    store = LocalDiskStore(tmp_path / "media")
    key = new_key()
    blob = await store.put(key, _chunks(b"abc", b"def"), max_bytes=6)
    assert blob.size_bytes == 6
    assert await read_all(store, key) == b"abcdef"
    other = new_key()
    with pytest.raises(errors.TooLarge):
        await store.put(other, _chunks(b"abc", b"defg"), max_bytes=6)
    assert sorted(p.name for p in (tmp_path / "media").rglob("*") if p.is_file()) == [key]
    with pytest.raises(BlobNotFound):
        await read_all(store, other)
    await store.delete(key)
    await store.delete(key)
    with pytest.raises(BlobNotFound):
        await read_all(store, key)
    with pytest.raises(ValueError):
        store.path_of("../../etc/passwd")
