"""Server discovery's pure parts: IP literals, well-known bodies, cache times,
forbidden addresses."""

from __future__ import annotations

import pytest

from matrixlib.ids import InvalidIdentifierError
from matrixlib.server_names import (
    WellKnownError,
    is_forbidden_address,
    is_ip_literal,
    parse_well_known,
    split_host,
    well_known_cache_seconds,
)


def test_split_host() -> None:
    assert split_host("example.org") == ("example.org", None)
    assert split_host("example.org:8448") == ("example.org", 8448)
    assert split_host("[::1]:80") == ("::1", 80)
    assert split_host("1.2.3.4") == ("1.2.3.4", None)
    with pytest.raises(InvalidIdentifierError):
        split_host("bad host")


def test_is_ip_literal() -> None:
    assert is_ip_literal("1.2.3.4") and is_ip_literal("::1") and is_ip_literal("[2001:db8::1]")
    assert not is_ip_literal("example.org") and not is_ip_literal("1.2.3")


def test_parse_well_known() -> None:
    assert parse_well_known(b'{"m.server": "delegated.example:443", "extra": 1}') == "delegated.example:443"
    for bad in (b"nope", b"[]", b"{}", b'{"m.server": 1}', b'{"m.server": "a b"}', b'{"m.server": ""}',
                b'{"m.server": "' + b"a" * 60000 + b'"}'):
        with pytest.raises(WellKnownError):
            parse_well_known(bad)


@pytest.mark.parametrize(("headers", "seconds"), [
    ({}, 86400),
    ({"cache-control": "max-age=600"}, 600),
    ({"cache-control": "public, max-age=\"30\", must-revalidate"}, 30),
    ({"cache-control": "max-age=999999999"}, 48 * 3600),
    ({"cache-control": "no-store"}, 0),
    ({"cache-control": "private, no-cache"}, 0),
])
def test_well_known_cache_seconds(headers: dict[str, str], seconds: float) -> None:
    assert well_known_cache_seconds(headers) == seconds


@pytest.mark.parametrize(("address", "forbidden"), [
    ("127.0.0.1", True), ("10.1.2.3", True), ("192.168.1.1", True), ("172.16.0.1", True),
    ("169.254.1.1", True), ("0.0.0.0", True), ("::1", True), ("fe80::1%eth0", True), ("fc00::1", True),
    ("::ffff:127.0.0.1", True), ("224.0.0.1", True),
    ("8.8.8.8", False), ("2606:4700::1111", False), ("::ffff:8.8.8.8", False),
])
def test_is_forbidden_address(address: str, forbidden: bool) -> None:
    assert is_forbidden_address(address) is forbidden
