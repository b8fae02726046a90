"""Signing keys, signed JSON and signed events: the spec's test vectors
(appendices "Cryptographic Test Vectors") and the rules around them."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from matrixlib.events import Event, EventFormatError
from matrixlib.hashes import add_content_hash, check_content_hash, decode_base64, encode_base64
from matrixlib.redaction import redact
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS, get_room_version
from matrixlib.signing import (
    SignatureError,
    SigningKey,
    decode_verify_key,
    encode_signing_key_line,
    encode_verify_key,
    generate_signing_key,
    hash_and_sign_event,
    parse_signing_keys,
    read_signing_key_file,
    servers_that_must_sign,
    sign_event,
    sign_json,
    signature_key_ids,
    verify_event_signature,
    verify_event_signatures,
    verify_json,
    write_signing_key_file,
)

SEED_BASE64 = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
# The spec's seed has non-zero padding bits in its last character; decoders
# ignore them, so the same 32 bytes encode back with a final "0".
SEED_BASE64_CANONICAL = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0"
SERVER_NAME = "domain"
KEY_ID = "ed25519:1"
V1 = get_room_version("1")


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.from_seed(decode_base64(SEED_BASE64), "1")


# -- JSON signing vectors -------------------------------------------------------

def test_sign_empty_object(key: SigningKey) -> None:
    assert sign_json({}, SERVER_NAME, key) == {
        "signatures": {
            "domain": {
                "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
            }
        }
    }


def test_sign_object_with_data(key: SigningKey) -> None:
    assert sign_json({"one": 1, "two": "Two"}, SERVER_NAME, key) == {
        "one": 1,
        "signatures": {
            "domain": {
                "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
            }
        },
        "two": "Two",
    }


# -- event signing vectors ------------------------------------------------------

MINIMAL_EVENT: dict[str, Any] = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
MINIMAL_EVENT_SIGNED: dict[str, Any] = {
    "auth_events": [],
    "content": {},
    "depth": 3,
    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "prev_events": [],
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        }
    },
    "type": "X",
    "unsigned": {"age_ts": 1000000},
}

REDACTABLE_EVENT: dict[str, Any] = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}
REDACTABLE_EVENT_SIGNED: dict[str, Any] = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
        }
    },
    "unsigned": {"age_ts": 1000000},
}


# The vectors keep `origin` in the signed (redacted) form, so they are
# made with the redaction rules of room versions 1-10.
@pytest.mark.parametrize("version", [str(n) for n in range(1, 11)])
@pytest.mark.parametrize(
    ("event", "signed"),
    [(MINIMAL_EVENT, MINIMAL_EVENT_SIGNED), (REDACTABLE_EVENT, REDACTABLE_EVENT_SIGNED)],
    ids=["minimal", "redactable"],
)
def test_event_signing_vectors(key: SigningKey, version: str, event: dict[str, Any],
                               signed: dict[str, Any]) -> None:
    before = copy.deepcopy(event)
    assert hash_and_sign_event(event, get_room_version(version), SERVER_NAME, key) == signed
    assert event == before


@pytest.mark.parametrize(
    "signed", [MINIMAL_EVENT_SIGNED, REDACTABLE_EVENT_SIGNED], ids=["minimal", "redactable"]
)
def test_event_signing_vectors_verify(key: SigningKey, signed: dict[str, Any]) -> None:
    verify_event_signature(signed, V1, SERVER_NAME, KEY_ID, key.verify_key)
    assert check_content_hash(signed)


def test_v11_redaction_rules_sign_differently(key: SigningKey) -> None:
    # v11 redaction drops `origin`, so the signature covers other bytes.
    signed = hash_and_sign_event(MINIMAL_EVENT, get_room_version("11"), SERVER_NAME, key)
    assert signed["hashes"] == MINIMAL_EVENT_SIGNED["hashes"]
    assert signed["signatures"] != MINIMAL_EVENT_SIGNED["signatures"]
    verify_event_signature(signed, get_room_version("11"), SERVER_NAME, KEY_ID, key.verify_key)
    with pytest.raises(SignatureError):
        verify_event_signature(signed, V1, SERVER_NAME, KEY_ID, key.verify_key)


# -- verification ---------------------------------------------------------------

def test_verify_json_round_trip_and_ignores_unsigned(key: SigningKey) -> None:
    signed = sign_json({"a": 1, "unsigned": {"age": 1}}, SERVER_NAME, key)
    verify_json(signed, SERVER_NAME, KEY_ID, key.verify_key)
    verify_json(dict(signed, unsigned={"age": 999}), SERVER_NAME, KEY_ID, key.verify_key)
    verify_json({k: v for k, v in signed.items() if k != "unsigned"}, SERVER_NAME, KEY_ID, key.verify_key)


def test_verify_json_fails_on_tampering(key: SigningKey) -> None:
    signed = sign_json({"a": 1}, SERVER_NAME, key)
    with pytest.raises(SignatureError):
        verify_json(dict(signed, a=2), SERVER_NAME, KEY_ID, key.verify_key)


def test_verify_json_fails_with_another_key(key: SigningKey) -> None:
    signed = sign_json({"a": 1}, SERVER_NAME, key)
    with pytest.raises(SignatureError):
        verify_json(signed, SERVER_NAME, KEY_ID, generate_signing_key("1").verify_key)


@pytest.mark.parametrize(
    ("server_name", "key_id", "signatures"),
    [
        ("other", KEY_ID, None),
        (SERVER_NAME, "ed25519:2", None),
        (SERVER_NAME, "curve25519:1", None),
        (SERVER_NAME, KEY_ID, {"domain": {"ed25519:1": "not base64!"}}),
        (SERVER_NAME, KEY_ID, {"domain": {"ed25519:1": "AAAA"}}),
        (SERVER_NAME, KEY_ID, {"domain": "not an object"}),
        (SERVER_NAME, KEY_ID, "not an object"),
    ],
)
def test_verify_json_fails_on_missing_or_malformed(key: SigningKey, server_name: str, key_id: str,
                                                   signatures: Any) -> None:
    signed = sign_json({"a": 1}, SERVER_NAME, key)
    if signatures is not None:
        signed["signatures"] = signatures
    with pytest.raises(SignatureError):
        verify_json(signed, server_name, key_id, key.verify_key)


def test_sign_json_keeps_other_signatures_and_does_not_modify_input(key: SigningKey) -> None:
    other = generate_signing_key("abc")
    obj = {"a": 1, "signatures": {"other": {"ed25519:x": "sig"}}}
    once = sign_json(obj, "other", other)
    assert obj == {"a": 1, "signatures": {"other": {"ed25519:x": "sig"}}}
    twice = sign_json(once, SERVER_NAME, key)
    assert twice["signatures"]["other"] == {"ed25519:x": "sig", "ed25519:abc": once["signatures"]["other"]["ed25519:abc"]}
    verify_json(twice, "other", "ed25519:abc", other.verify_key)
    verify_json(twice, SERVER_NAME, KEY_ID, key.verify_key)
    assert signature_key_ids(twice, "other") == ["ed25519:abc", "ed25519:x"]
    assert signature_key_ids(twice, "nobody") == []


def test_signature_key_ids_skips_unknown_algorithms() -> None:
    obj = {"signatures": {"s": {"ed25519:1": "x", "curve25519:1": "y", "ed25519": "z"}}}
    assert signature_key_ids(obj, "s") == ["ed25519:1"]


def test_event_signature_survives_redaction(key: SigningKey) -> None:
    for version, room_version in KNOWN_ROOM_VERSIONS.items():
        event = dict(REDACTABLE_EVENT)
        if version not in ("1", "2"):
            del event["event_id"]
        signed = hash_and_sign_event(event, room_version, SERVER_NAME, key)
        redacted = redact(signed, room_version)
        verify_event_signature(redacted, room_version, SERVER_NAME, KEY_ID, key.verify_key)
        assert not check_content_hash(redacted)


def test_event_signature_covers_the_content_hash(key: SigningKey) -> None:
    signed = hash_and_sign_event(REDACTABLE_EVENT, V1, SERVER_NAME, key)
    forged = dict(signed, content={"body": "forged"})
    # The signature still verifies (content is redactable) but the hash does not ...
    verify_event_signature(forged, V1, SERVER_NAME, KEY_ID, key.verify_key)
    assert not check_content_hash(forged)
    # ... and fixing the hash breaks the signature.
    with pytest.raises(SignatureError):
        verify_event_signature(add_content_hash(forged), V1, SERVER_NAME, KEY_ID, key.verify_key)


def test_sign_event_without_hash_signs_what_is_there(key: SigningKey) -> None:
    signed = sign_event(REDACTABLE_EVENT, V1, SERVER_NAME, key)
    assert "hashes" not in signed
    verify_event_signature(signed, V1, SERVER_NAME, KEY_ID, key.verify_key)


# -- keys and key files ---------------------------------------------------------

def test_test_vector_key_public_half(key: SigningKey) -> None:
    assert key.key_id == "ed25519:1"
    assert encode_base64(key.seed) == SEED_BASE64_CANONICAL
    assert decode_verify_key(encode_verify_key(key.verify_key)) == key.verify_key
    assert len(encode_verify_key(key.verify_key)) == 43


def test_key_file_round_trip(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "signing.key"
    write_signing_key_file(path, key)
    assert path.read_text() == f"ed25519 1 {SEED_BASE64_CANONICAL}\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    read = read_signing_key_file(path)
    assert read.version == "1" and read.seed == key.seed


def test_key_file_first_key_wins_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    first, second = generate_signing_key("a_1"), generate_signing_key("b")
    path = tmp_path / "keys"
    path.write_text(f"\n{encode_signing_key_line(first)}\n{encode_signing_key_line(second)}\n")
    assert read_signing_key_file(path).seed == first.seed
    assert [k.version for k in parse_signing_keys(path.read_text())] == ["a_1", "b"]


@pytest.mark.parametrize(
    "text",
    ["", "ed25519 1", f"curve25519 1 {SEED_BASE64}", "ed25519 1 AAAA", "ed25519 1 not-base64!!"],
)
def test_bad_key_files_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(ValueError):
        read_signing_key_file(path)


@pytest.mark.parametrize("bad", ["", "a b", "a:b"])
def test_bad_key_versions_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        SigningKey(bad, nacl.signing.SigningKey.generate())


def test_key_repr_hides_the_seed(key: SigningKey) -> None:
    assert SEED_BASE64_CANONICAL not in repr(key)
    assert repr(key) == "<SigningKey ed25519:1>"


@pytest.mark.parametrize("bad", ["AAAA", "not base64!", encode_base64(bytes(31))])
def test_bad_verify_keys_are_refused(bad: str) -> None:
    with pytest.raises(SignatureError):
        decode_verify_key(bad)


# -- who must sign --------------------------------------------------------------

def _member(version: str, content: dict[str, Any], *, sender: str = "@alice:a.example",
            event_id: str | None = None) -> Event:
    pdu: dict[str, Any] = {
        "type": "m.room.member",
        "room_id": "!r:a.example",
        "sender": sender,
        "state_key": sender,
        "content": content,
        "depth": 2,
        "origin_server_ts": 1,
        "prev_events": [],
        "auth_events": [],
    }
    if event_id is not None:
        pdu["event_id"] = event_id
    return Event(pdu, get_room_version(version))


def test_sender_server_must_sign() -> None:
    assert servers_that_must_sign(_member("10", {"membership": "join"})) == {"a.example"}


def test_v1_v2_event_id_server_must_sign_too() -> None:
    for version in ("1", "2"):
        event = _member(version, {"membership": "join"}, event_id="$x:b.example")
        assert servers_that_must_sign(event) == {"a.example", "b.example"}
        same = _member(version, {"membership": "join"}, event_id="$x:a.example")
        assert servers_that_must_sign(same) == {"a.example"}


def test_third_party_invite_does_not_need_the_senders_server() -> None:
    content = {"membership": "invite", "third_party_invite": {"signed": {}}}
    assert servers_that_must_sign(_member("10", content)) == set()
    assert servers_that_must_sign(_member("1", content, event_id="$x:b.example")) == {"b.example"}
    # A plain invite needs it.
    assert servers_that_must_sign(_member("10", {"membership": "invite"})) == {"a.example"}


def test_restricted_join_needs_the_authorising_server_from_v8() -> None:
    content = {"membership": "join", "join_authorised_via_users_server": "@admin:c.example:8448"}
    for version in ("8", "9", "10", "11", "12"):
        assert servers_that_must_sign(_member(version, content)) == {"a.example", "c.example:8448"}
    assert servers_that_must_sign(_member("7", content)) == {"a.example"}
    leave = {"membership": "leave", "join_authorised_via_users_server": "@admin:c.example"}
    assert servers_that_must_sign(_member("9", leave)) == {"a.example"}


def test_malformed_sender_is_an_error_not_an_empty_set() -> None:
    with pytest.raises(EventFormatError):
        servers_that_must_sign(_member("10", {"membership": "join"}, sender="@nodomain"))


# -- whole-event verification ---------------------------------------------------

def _signed_join(version: str, *signers: tuple[str, SigningKey], content: dict[str, Any] | None = None,
                 event_id: str | None = None) -> Event:
    event = _member(version, content or {"membership": "join"}, event_id=event_id)
    pdu = hash_and_sign_event(event.pdu, event.room_version, signers[0][0], signers[0][1])
    for server, signer in signers[1:]:
        pdu = sign_event(pdu, event.room_version, server, signer)
    return Event(pdu, event.room_version)


def test_verify_event_signatures_accepts_the_required_servers(key: SigningKey) -> None:
    other = generate_signing_key("o")
    content = {"membership": "join", "join_authorised_via_users_server": "@admin:c.example"}
    event = _signed_join("9", ("a.example", key), ("c.example", other), content=content)
    keys = {"a.example": {KEY_ID: key.verify_key}, "c.example": {other.key_id: other.verify_key}}
    verify_event_signatures(event, keys)
    # The authorising server's signature is required ...
    with pytest.raises(SignatureError, match=r"c\.example"):
        verify_event_signatures(_signed_join("9", ("a.example", key), content=content), keys)
    # ... and so is a key we know for it.
    with pytest.raises(SignatureError):
        verify_event_signatures(event, {"a.example": keys["a.example"]})


def test_verify_event_signatures_v1_needs_the_event_id_server(key: SigningKey) -> None:
    other = generate_signing_key("o")
    keys = {"a.example": {KEY_ID: key.verify_key}, "b.example": {other.key_id: other.verify_key}}
    both = _signed_join("1", ("a.example", key), ("b.example", other), event_id="$x:b.example")
    verify_event_signatures(both, keys)
    only_sender = _signed_join("1", ("a.example", key), event_id="$x:b.example")
    with pytest.raises(SignatureError, match=r"b\.example"):
        verify_event_signatures(only_sender, keys)


def test_verify_event_signatures_every_known_key_must_verify(key: SigningKey) -> None:
    event = _signed_join("10", ("a.example", key))
    second = generate_signing_key("2")
    pdu = dict(event.pdu)
    pdu["signatures"] = {"a.example": {**pdu["signatures"]["a.example"], "ed25519:2": encode_base64(bytes(64))}}
    forged = Event(pdu, event.room_version)
    # Unknown key IDs are ignored ...
    verify_event_signatures(forged, {"a.example": {KEY_ID: key.verify_key}})
    # ... but a bad signature by a known key fails the event.
    with pytest.raises(SignatureError):
        verify_event_signatures(forged, {"a.example": {KEY_ID: key.verify_key, "ed25519:2": second.verify_key}})


def test_verify_event_signatures_survives_redaction(key: SigningKey) -> None:
    event = _signed_join("12", ("a.example", key), content={"membership": "join", "displayname": "A"})
    redacted = Event(redact(event.pdu, event.room_version), event.room_version)
    verify_event_signatures(redacted, {"a.example": {KEY_ID: key.verify_key}})
