"""m.room.server_acl matching (client-server-api "Server Access Control Lists")."""

from __future__ import annotations

from typing import Any

import pytest

from matrixlib.server_acl import server_allowed_by_acl

ACL: dict[str, Any] = {"allow": ["*"], "deny": ["*.evil.example", "evil.example"], "allow_ip_literals": False}


@pytest.mark.parametrize(("server", "allowed"), [
    ("good.example", True),
    ("good.example:8448", True),
    ("evil.example", False),
    ("evil.example:443", False),
    ("sub.evil.example", False),
    ("EVIL.example", False),
    ("notevil.example", True),
    ("1.2.3.4", False),
    ("[::1]:8448", False),
])
def test_deny_and_ip_literals(server: str, allowed: bool) -> None:
    assert server_allowed_by_acl(ACL, server) is allowed


def test_allow_list_and_wildcards() -> None:
    acl = {"allow": ["*.trusted.example", "a?.example"]}
    assert server_allowed_by_acl(acl, "x.trusted.example")
    assert not server_allowed_by_acl(acl, "trusted.example")
    assert server_allowed_by_acl(acl, "ab.example")
    assert not server_allowed_by_acl(acl, "abc.example")
    # IP literals are allowed unless allow_ip_literals is false.
    assert server_allowed_by_acl({"allow": ["*"]}, "10.0.0.1")


def test_missing_or_malformed_lists_allow_nothing() -> None:
    assert not server_allowed_by_acl({}, "good.example")
    assert not server_allowed_by_acl({"allow": "*"}, "good.example")
    assert server_allowed_by_acl({"allow": ["*", 5]}, "good.example")
    assert not server_allowed_by_acl({"allow": ["*"]}, "bad server name")


def test_dots_are_literal() -> None:
    assert not server_allowed_by_acl({"allow": ["a.example"]}, "abexample")
