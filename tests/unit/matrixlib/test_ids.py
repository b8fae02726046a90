"""Identifier grammar (appendices "Identifier Grammar")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from matrixlib.ids import (
    EventID,
    InvalidIdentifierError,
    RoomAlias,
    RoomID,
    UserID,
    is_valid_event_id,
    is_valid_new_localpart,
    is_valid_room_alias,
    is_valid_room_id,
    is_valid_server_name,
    is_valid_user_id,
    parse_server_name,
)
from matrixlib.room_versions import get_room_version

# -- server names ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("server_name", "host", "port"),
    [
        # The spec's examples.
        ("matrix.org", "matrix.org", None),
        ("matrix.org:8888", "matrix.org", 8888),
        ("1.2.3.4", "1.2.3.4", None),
        ("1.2.3.4:1234", "1.2.3.4", 1234),
        ("[1234:5678::abcd]", "[1234:5678::abcd]", None),
        ("[1234:5678::abcd]:5678", "[1234:5678::abcd]", 5678),
        # More.
        ("localhost", "localhost", None),
        ("MATRIX.ORG", "MATRIX.ORG", None),
        ("a-b.example.com:8448", "a-b.example.com", 8448),
        ("[::1]:8448", "[::1]", 8448),
        ("[::ffff:1.2.3.4]", "[::ffff:1.2.3.4]", None),
        ("255.255.255.255:0", "255.255.255.255", 0),
        ("x" * 255, "x" * 255, None),
    ],
)
def test_valid_server_names(server_name: str, host: str, port: int | None) -> None:
    assert parse_server_name(server_name) == (host, port)
    assert is_valid_server_name(server_name)


@pytest.mark.parametrize(
    "server_name",
    [
        "",
        ":8448",
        "matrix.org:",
        "matrix.org:123456",
        "matrix.org:port",
        "matrix.org:80:80",
        "matrix_org",
        "matrix.org/path",
        "matrix org",
        "mätrix.org",
        "256.1.1.1",
        "1.2.3.999:80",
        "[1234:5678::abcd",
        "1234:5678::abcd",
        "[notipv6]",
        "[1::2::3]",
        "[fe80::1%eth0]",
        "[::1]8448",
        "x" * 256,
    ],
)
def test_invalid_server_names(server_name: str) -> None:
    assert not is_valid_server_name(server_name)
    with pytest.raises(InvalidIdentifierError):
        parse_server_name(server_name)


# -- user IDs -------------------------------------------------------------------


def test_user_id_parse_and_str() -> None:
    user = UserID.parse("@alice:matrix.org:8448")
    assert user == UserID("alice", "matrix.org:8448")
    assert str(user) == "@alice:matrix.org:8448"
    assert user.is_compliant


@pytest.mark.parametrize("localpart", ["a", "alice", "a.b_c=d-e/f+g", "0123", "_bridge_user"])
def test_new_localparts_allowed(localpart: str) -> None:
    assert is_valid_new_localpart(localpart)


@pytest.mark.parametrize("localpart", ["", "Alice", "a b", "a:b", "a@b", "a*b", "é", "a#b", "a!"])
def test_new_localparts_refused(localpart: str) -> None:
    assert not is_valid_new_localpart(localpart)


@pytest.mark.parametrize("user_id", ["@Alice:matrix.org", "@a b:matrix.org", "@:matrix.org", "@日本:matrix.org",
                                     "@\x01:matrix.org", "@a#!$%:matrix.org"])
def test_historical_user_ids_are_accepted_but_flagged(user_id: str) -> None:
    user = UserID.parse(user_id)
    assert is_valid_user_id(user_id)
    # Only the printable-ASCII, non-empty ones count as compliant.
    assert user.is_compliant == (user.localpart != "" and user.localpart.isascii()
                                 and user.localpart.isprintable() and " " not in user.localpart)


@pytest.mark.parametrize(
    "user_id",
    [
        "alice:matrix.org",
        "#alice:matrix.org",
        "@alice",
        "@alice:",
        "@alice:bad_server",
        "@a\x00b:matrix.org",
        "@a\ud800:matrix.org",
        "@" + "a" * 240 + ":matrix.org.example",
    ],
)
def test_invalid_user_ids(user_id: str) -> None:
    assert not is_valid_user_id(user_id)
    with pytest.raises(InvalidIdentifierError):
        UserID.parse(user_id)


def test_user_id_length_limit_is_in_bytes() -> None:
    # 255 bytes exactly is allowed; a multi-byte localpart counts its bytes.
    server = "example.org"
    localpart = "a" * (255 - 2 - len(server))
    assert is_valid_user_id(f"@{localpart}:{server}")
    assert not is_valid_user_id(f"@{localpart}a:{server}")
    assert not is_valid_user_id(f"@{'é' * 122}:{server}")  # 244 bytes of localpart


# -- room aliases ---------------------------------------------------------------


def test_room_alias() -> None:
    assert RoomAlias.parse("#room:example.org") == RoomAlias("room", "example.org")
    assert str(RoomAlias.parse("#Räume 1:[::1]:8448")) == "#Räume 1:[::1]:8448"
    for bad in ["room:example.org", "#room", "#ro\x00om:example.org", "#room:", "!room:example.org",
                "#" + "a" * 250 + ":example.org"]:
        assert not is_valid_room_alias(bad)


# -- room IDs -------------------------------------------------------------------

V12_ROOM_ID = "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"


def test_room_id_with_and_without_domain() -> None:
    assert RoomID.parse("!abc:example.org") == RoomID("abc", "example.org")
    assert RoomID.parse(V12_ROOM_ID) == RoomID(V12_ROOM_ID[1:], None)
    assert str(RoomID.parse(V12_ROOM_ID)) == V12_ROOM_ID
    assert str(RoomID.parse("!abc:example.org")) == "!abc:example.org"


@pytest.mark.parametrize("bad", ["", "!", "abc:example.org", "$abc:example.org", "!abc:", "!abc:bad_host",
                                 "!a\x00b", "!" + "a" * 255])
def test_invalid_room_ids(bad: str) -> None:
    assert not is_valid_room_id(bad)
    with pytest.raises(InvalidIdentifierError):
        RoomID.parse(bad)


def test_room_id_form_per_room_version() -> None:
    v11, v12 = get_room_version("11"), get_room_version("12")
    assert is_valid_room_id("!abc:example.org", v11)
    assert not is_valid_room_id(V12_ROOM_ID, v11)
    assert is_valid_room_id(V12_ROOM_ID, v12)
    assert not is_valid_room_id("!abc:example.org", v12)
    # v12 room IDs are a URL-safe sha256: 43 characters of that alphabet.
    assert not is_valid_room_id(V12_ROOM_ID[:-1], v12)
    assert not is_valid_room_id(V12_ROOM_ID[:-1] + "+", v12)


# -- event IDs ------------------------------------------------------------------

V3_EVENT_ID = "$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk"
V4_EVENT_ID = "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"


def test_event_ids() -> None:
    assert EventID.parse("$abc:example.org") == EventID("abc", "example.org")
    assert EventID.parse(V4_EVENT_ID) == EventID(V4_EVENT_ID[1:], None)
    assert str(EventID.parse(V3_EVENT_ID)) == V3_EVENT_ID
    for bad in ["", "$", "abc", "!abc:example.org", "$abc:", "$a\x00", "$" + "a" * 255]:
        assert not is_valid_event_id(bad)


def test_event_id_form_per_room_version() -> None:
    v1, v3, v4, v12 = (get_room_version(v) for v in ("1", "3", "4", "12"))
    assert is_valid_event_id("$abc:example.org", v1)
    assert not is_valid_event_id(V4_EVENT_ID, v1)
    assert is_valid_event_id(V3_EVENT_ID, v3)
    assert not is_valid_event_id(V3_EVENT_ID, v4)  # has "/"
    assert is_valid_event_id(V4_EVENT_ID, v4)
    assert not is_valid_event_id(V4_EVENT_ID, v3)  # has "-" and "_"
    assert is_valid_event_id(V4_EVENT_ID, v12)
    assert not is_valid_event_id("$abc:example.org", v12)
    assert not is_valid_event_id("$short", v12)


localparts = st.text(alphabet=st.characters(codec="utf-8", exclude_characters=":\x00"),
                     max_size=20)
server_names = st.sampled_from(["example.org", "example.org:8448", "1.2.3.4", "[::1]", "[::1]:1", "localhost"])


@given(localparts, server_names)
def test_parse_and_str_round_trip(localpart: str, server_name: str) -> None:
    for cls, sigil in ((UserID, "@"), (RoomAlias, "#"), (RoomID, "!"), (EventID, "$")):
        text = f"{sigil}{localpart}:{server_name}"
        if len(text.encode()) > 255:
            continue
        parsed = cls.parse(text)
        assert str(parsed) == text
        assert parsed.localpart == localpart and parsed.server_name == server_name


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._=-/+", min_size=1, max_size=30))
def test_new_localparts_make_compliant_user_ids(localpart: str) -> None:
    assert is_valid_new_localpart(localpart)
    assert UserID.parse(f"@{localpart}:example.org").is_compliant
