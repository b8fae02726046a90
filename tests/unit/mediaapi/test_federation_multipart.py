"""The multipart/mixed media answers of the federation API, both ways."""

from __future__ import annotations

import pytest

from federationapi.internal.remote_media import filename_of, parse_multipart_mixed
from federationapi.routing.media import multipart_body
from mediaapi.api import MediaContent


def test_what_we_serve_parses_back() -> None:
    content = b"\x89PNG\r\n\r\n--not-the-boundary\r\n" + bytes(range(256))
    body = multipart_body(MediaContent("image/png", "h\u00e9llo.png", content), "b0undary")
    parts = parse_multipart_mixed("multipart/mixed; boundary=b0undary", body)
    assert len(parts) == 2
    assert parts[0].headers["content-type"] == "application/json" and parts[0].body == b"{}"
    assert parts[1].headers["content-type"] == "image/png"
    assert parts[1].body == content
    assert filename_of(parts[1].headers["content-disposition"]) == "h\u00e9llo.png"


def test_other_servers_forms() -> None:
    # A quoted boundary, a preamble, a part without headers, a Location part.
    body = (b"preamble\r\n--abc\r\n\r\n{\"x\":1}\r\n--abc  \r\nLocation: https://cdn.example/m\r\n\r\n"
            b"\r\n--abc--\r\nepilogue")
    parts = parse_multipart_mixed('multipart/mixed; boundary="abc"', body)
    assert parts[0].headers == {} and parts[0].body == b'{"x":1}'
    assert parts[1].headers == {"location": "https://cdn.example/m"}


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/json", b"{}"),
    ("multipart/mixed", b"--x\r\n\r\n{}\r\n--x--"),
    ("multipart/mixed; boundary=x", b"--x\r\n\r\n{}"),
    ("multipart/mixed; boundary=x", b"--x\r\nContent-Type: a/b\r\nno end of headers"),
])
def test_malformed_answers_are_refused(content_type: str, body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_multipart_mixed(content_type, body)
