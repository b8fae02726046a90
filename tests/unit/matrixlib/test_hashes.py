"""Content hashes, reference hashes and hash-derived IDs."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from matrixlib.canonical_json import encode_canonical_json
from matrixlib.events import EventFormatError
from matrixlib.hashes import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_room_id,
    decode_base64,
    encode_base64,
    reference_hash,
    reference_hash_base64,
)
from matrixlib.redaction import redact
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS, get_room_version
from tests.unit.matrixlib.test_redaction import full_event

V1 = get_room_version("1")
V3 = get_room_version("3")
V4 = get_room_version("4")
V11 = get_room_version("11")
V12 = get_room_version("12")

# The minimal event of appendices "Event Signing" and its content hash.
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
MINIMAL_EVENT_HASH = "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"

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
REDACTABLE_EVENT_HASH = "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"


# -- base64 ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "encoded"),
    [(b"", ""), (b"f", "Zg"), (b"fo", "Zm8"), (b"foo", "Zm9v"), (b"foob", "Zm9vYg"),
     (b"fooba", "Zm9vYmE"), (b"foobar", "Zm9vYmFy")],
)
def test_unpadded_base64_spec_examples(raw: bytes, encoded: str) -> None:
    assert encode_base64(raw) == encoded
    assert decode_base64(encoded) == raw
    # Decoders accept padding too.
    assert decode_base64(base64.b64encode(raw).decode()) == raw


def test_urlsafe_base64_uses_minus_and_underscore() -> None:
    data = bytes([0xFB, 0xFF, 0xBF])
    assert encode_base64(data) == "+/+/"
    assert encode_base64(data, urlsafe=True) == "-_-_"
    assert decode_base64("-_-_") == decode_base64("+/+/") == data


@pytest.mark.parametrize("bad", ["a", "Zm9v!", "Zm 9v", "日本"])
def test_invalid_base64_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_base64(bad)


# -- content hash ---------------------------------------------------------------

def test_content_hash_spec_vectors() -> None:
    assert encode_base64(compute_content_hash(MINIMAL_EVENT)) == MINIMAL_EVENT_HASH
    assert encode_base64(compute_content_hash(REDACTABLE_EVENT)) == REDACTABLE_EVENT_HASH


def test_content_hash_ignores_unsigned_signatures_and_hashes() -> None:
    changed = dict(MINIMAL_EVENT, unsigned={"age": 5}, signatures={"x": {"ed25519:1": "sig"}},
                   hashes={"sha256": "whatever"})
    assert compute_content_hash(changed) == compute_content_hash(MINIMAL_EVENT)
    without = {k: v for k, v in MINIMAL_EVENT.items() if k not in ("unsigned", "signatures", "hashes")}
    assert compute_content_hash(MINIMAL_EVENT) == hashlib.sha256(encode_canonical_json(without)).digest()


def test_content_hash_covers_content() -> None:
    changed = dict(REDACTABLE_EVENT, content={"body": "Here is other content"})
    assert compute_content_hash(changed) != compute_content_hash(REDACTABLE_EVENT)


def test_add_and_check_content_hash() -> None:
    hashed = add_content_hash(REDACTABLE_EVENT)
    assert hashed["hashes"] == {"sha256": REDACTABLE_EVENT_HASH}
    assert "hashes" not in REDACTABLE_EVENT  # the input is not modified
    assert check_content_hash(hashed)
    tampered = dict(hashed, content={"body": "tampered"})
    assert not check_content_hash(tampered)


def test_add_content_hash_keeps_other_algorithms() -> None:
    hashed = add_content_hash(dict(MINIMAL_EVENT, hashes={"sha512": "abc"}))
    assert hashed["hashes"] == {"sha512": "abc", "sha256": MINIMAL_EVENT_HASH}


@pytest.mark.parametrize(
    "hashes", [None, {}, {"sha256": 1}, {"sha256": "not base64!"}, "sha256", {"sha512": MINIMAL_EVENT_HASH}]
)
def test_check_content_hash_fails_on_missing_or_malformed(hashes: Any) -> None:
    event = dict(MINIMAL_EVENT)
    if hashes is None:
        del event["hashes"]
    else:
        event["hashes"] = hashes
    assert not check_content_hash(event)


def test_check_content_hash_accepts_padded_hash() -> None:
    event = dict(MINIMAL_EVENT, hashes={"sha256": MINIMAL_EVENT_HASH + "="})
    assert check_content_hash(event)


def test_redacted_event_fails_its_content_hash() -> None:
    # What a receiver sees when it is handed a redacted copy.
    hashed = add_content_hash(REDACTABLE_EVENT)
    assert not check_content_hash(redact(hashed, V1))


def test_content_hash_of_old_room_version_event_with_huge_integer() -> None:
    event = dict(MINIMAL_EVENT, content={"n": 2**60})
    expected = hashlib.sha256(
        b'{"auth_events":[],"content":{"n":1152921504606846976},"depth":3,"origin":"domain",'
        b'"origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain","sender":"@a:domain","type":"X"}'
    ).digest()
    assert compute_content_hash(event) == expected


# -- reference hash and event IDs -----------------------------------------------

def _v3_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "m.room.message",
        "room_id": "!r:domain",
        "sender": "@u:domain",
        "content": {"body": "hello"},
        "depth": 5,
        "origin_server_ts": 1000000,
        "prev_events": ["$abc"],
        "auth_events": ["$def"],
        "hashes": {"sha256": "x"},
        "signatures": {"domain": {"ed25519:1": "sig"}},
        "unsigned": {"age": 4},
    }
    event.update(overrides)
    return event


def test_reference_hash_is_sha256_of_redacted_event_without_signatures() -> None:
    event = _v3_event()
    redacted = {k: v for k, v in event.items() if k not in ("signatures", "unsigned")}
    redacted["content"] = {}
    assert reference_hash(event, V4) == hashlib.sha256(encode_canonical_json(redacted)).digest()


def test_reference_hash_ignores_redactable_parts_but_not_hashes() -> None:
    event = _v3_event()
    assert reference_hash(event, V4) == reference_hash(_v3_event(content={"body": "other"}), V4)
    assert reference_hash(event, V4) == reference_hash(_v3_event(signatures={}, unsigned={}), V4)
    assert reference_hash(event, V4) != reference_hash(_v3_event(hashes={"sha256": "y"}), V4)
    assert reference_hash(event, V4) != reference_hash(_v3_event(depth=6), V4)


def test_reference_hash_follows_the_room_versions_redaction() -> None:
    # `origin` is kept by v1-10 redaction and stripped from v11 on.
    with_origin = _v3_event(origin="domain")
    assert reference_hash(with_origin, V4) != reference_hash(_v3_event(), V4)
    assert reference_hash(with_origin, V11) == reference_hash(_v3_event(), V11)


def _event_whose_hash_needs_both_alphabets() -> dict[str, Any]:
    for depth in range(1, 1000):
        event = _v3_event(depth=depth)
        standard = encode_base64(reference_hash(event, V3))
        if "+" in standard and "/" in standard:
            return event
    raise AssertionError("no such event in range")  # 1 - (1-2/64)**43 per try: never


def test_event_id_alphabet_v3_standard_v4_urlsafe() -> None:
    event = _event_whose_hash_needs_both_alphabets()
    digest = reference_hash(event, V3)
    v3_id = compute_event_id(event, V3)
    v4_id = compute_event_id(event, V4)
    assert v3_id == "$" + base64.b64encode(digest).decode().rstrip("=")
    assert v4_id == "$" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert "+" in v3_id and "/" in v3_id
    assert "-" in v4_id and "_" in v4_id and "+" not in v4_id and "/" not in v4_id
    assert len(v3_id) == len(v4_id) == 44


@pytest.mark.parametrize("version", [v for v in KNOWN_ROOM_VERSIONS if v not in ("1", "2", "3")])
def test_event_ids_are_urlsafe_from_v4(version: str) -> None:
    event = _event_whose_hash_needs_both_alphabets()
    room_version = get_room_version(version)
    assert compute_event_id(event, room_version) == "$" + encode_base64(
        reference_hash(event, room_version), urlsafe=True
    )


def test_event_id_in_v1_is_the_one_carried() -> None:
    assert compute_event_id(REDACTABLE_EVENT, V1) == "$0:domain"
    with pytest.raises(EventFormatError):
        compute_event_id(_v3_event(), V1)


def test_an_event_id_key_changes_the_reference_hash() -> None:
    # The redaction keep-list has `event_id`, so a stray one in a v3+ event
    # changes its hash: Event drops the key before anything is computed.
    event = _v3_event()
    assert compute_event_id(event, V4) != compute_event_id(dict(event, event_id="$x"), V4)


def test_reference_hash_base64_is_standard_alphabet() -> None:
    event = _event_whose_hash_needs_both_alphabets()
    assert reference_hash_base64(event, V1) == encode_base64(reference_hash(event, V1))


def test_v12_room_id_is_create_event_id_with_bang() -> None:
    create: dict[str, Any] = {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@creator:domain",
        "content": {"room_version": "12"},
        "depth": 1,
        "origin_server_ts": 1000000,
        "prev_events": [],
        "auth_events": [],
        "hashes": {"sha256": "x"},
        "signatures": {},
    }
    room_id = compute_room_id(create, V12)
    digest = hashlib.sha256(
        encode_canonical_json({k: v for k, v in create.items() if k != "signatures"})
    ).digest()
    assert room_id == "!" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert room_id[1:] == compute_event_id(create, V12)[1:]
    # All of a v11+ create event's content is kept, so it changes the room ID.
    other = dict(create, content={"room_version": "12", "additional_creators": ["@b:domain"]})
    assert compute_room_id(other, V12) != room_id
    with pytest.raises(ValueError):
        compute_room_id(create, V11)


# Reference hashes Synapse 1.163 (its own redaction code) computed for the
# events of test_redaction.full_event, as laid out in _synapse_event below:
# an outside check that redaction and hashing agree with the main
# implementation, version by version.
SYNAPSE_REFERENCE_HASHES = [
    (1, "m.room.member", "ded9a546c56a7eb938ee784fddcc405f5c063a625b502a663fa47ea272fe535e"),
    (1, "m.room.create", "b26f467fc7a0749a970af1167beb51f726fb64bc1c3ab20c7575fa0327b3f45c"),
    (1, "m.room.join_rules", "e2950d79dddc27a4e9ecac054475d130e4800db72fa8313a1cebacabc6d07714"),
    (1, "m.room.power_levels", "d8b919eba1b7f2cbdefb95fac239884964d3216ba1bf76fb3750a758d0b15c92"),
    (1, "m.room.aliases", "a4776a68073e59219d54fb2201bce441a9fe53ef7ae18b0dd7e4567ca2ed1dc3"),
    (2, "m.room.member", "ded9a546c56a7eb938ee784fddcc405f5c063a625b502a663fa47ea272fe535e"),
    (2, "m.room.create", "b26f467fc7a0749a970af1167beb51f726fb64bc1c3ab20c7575fa0327b3f45c"),
    (2, "m.room.join_rules", "e2950d79dddc27a4e9ecac054475d130e4800db72fa8313a1cebacabc6d07714"),
    (2, "m.room.power_levels", "d8b919eba1b7f2cbdefb95fac239884964d3216ba1bf76fb3750a758d0b15c92"),
    (2, "m.room.aliases", "a4776a68073e59219d54fb2201bce441a9fe53ef7ae18b0dd7e4567ca2ed1dc3"),
    (3, "m.room.member", "9b3aa1810a1f28a0ef0160ff6ae18bdf49097be32b8731f877a6ab6cbb36dd81"),
    (3, "m.room.create", "1a3fd239b66a5be27edb2f347067c24f3fadb7d8e140e705ea35997f6a68ee46"),
    (3, "m.room.join_rules", "2752d321482959f952a73335edeaadd4c99a048cd901cb08800cd840af26db3e"),
    (3, "m.room.power_levels", "c1c9d3d8b820a9b1e38b27aa45cb8d82da0bb7a25811f5adfbc1110f3d2e9901"),
    (3, "m.room.aliases", "f2155b22e600c21d98eb59b19fecd360e920c03a08d0754ae32d3c2286122227"),
    (4, "m.room.member", "9b3aa1810a1f28a0ef0160ff6ae18bdf49097be32b8731f877a6ab6cbb36dd81"),
    (4, "m.room.create", "1a3fd239b66a5be27edb2f347067c24f3fadb7d8e140e705ea35997f6a68ee46"),
    (4, "m.room.join_rules", "2752d321482959f952a73335edeaadd4c99a048cd901cb08800cd840af26db3e"),
    (4, "m.room.power_levels", "c1c9d3d8b820a9b1e38b27aa45cb8d82da0bb7a25811f5adfbc1110f3d2e9901"),
    (4, "m.room.aliases", "f2155b22e600c21d98eb59b19fecd360e920c03a08d0754ae32d3c2286122227"),
    (5, "m.room.member", "9b3aa1810a1f28a0ef0160ff6ae18bdf49097be32b8731f877a6ab6cbb36dd81"),
    (5, "m.room.create", "1a3fd239b66a5be27edb2f347067c24f3fadb7d8e140e705ea35997f6a68ee46"),
    (5, "m.room.join_rules", "2752d321482959f952a73335edeaadd4c99a048cd901cb08800cd840af26db3e"),
    (5, "m.room.power_levels", "c1c9d3d8b820a9b1e38b27aa45cb8d82da0bb7a25811f5adfbc1110f3d2e9901"),
    (5, "m.room.aliases", "f2155b22e600c21d98eb59b19fecd360e920c03a08d0754ae32d3c2286122227"),
    (6, "m.room.member", "9b3aa1810a1f28a0ef0160ff6ae18bdf49097be32b8731f877a6ab6cbb36dd81"),
    (6, "m.room.create", "1a3fd239b66a5be27edb2f347067c24f3fadb7d8e140e705ea35997f6a68ee46"),
    (6, "m.room.join_rules", "2752d321482959f952a73335edeaadd4c99a048cd901cb08800cd840af26db3e"),
    (6, "m.room.power_levels", "c1c9d3d8b820a9b1e38b27aa45cb8d82da0bb7a25811f5adfbc1110f3d2e9901"),
    (6, "m.room.aliases", "13bc778a91b6df953fc124c1a1e2c582ef786d9ff1b72b68b91c4ff5dccb99c2"),
    (7, "m.room.member", "9b3aa1810a1f28a0ef0160ff6ae18bdf49097be32b8731f877a6ab6cbb36dd81"),
    (7, "m.room.create", "1a3fd239b66a5be27edb2f347067c24f3fadb7d8e140e705ea35997f6a68ee46"),
    (7, "m.room.join_rules", "2752d321482959f952a73335edeaadd4c99a048cd901cb08800cd840af26db3e"),
    (7, "m.room.power_levels", "c1c9d3d8b820a9b1e38b27aa45cb8d82da0bb7a25811f5adfbc1110f3d2e9901"),
    (7, "m.room.aliases", "13bc778a91b6df953fc124c1a1e2c582ef786d9ff1b72b68b91c4ff5dccb99c2"),
    (8, "m.room.member", "9b3aa1810a1f28a0ef0160ff6ae18bdf49097be32b8731f877a6ab6cbb36dd81"),
    (8, "m.room.create", "1a3fd239b66a5be27edb2f347067c24f3fadb7d8e140e705ea35997f6a68ee46"),
    (8, "m.room.join_rules", "b9499bea6793ada93793797b841140c00a27ef6aad66aceec28be49564de6d85"),
    (8, "m.room.power_levels", "c1c9d3d8b820a9b1e38b27aa45cb8d82da0bb7a25811f5adfbc1110f3d2e9901"),
    (8, "m.room.aliases", "13bc778a91b6df953fc124c1a1e2c582ef786d9ff1b72b68b91c4ff5dccb99c2"),
    (9, "m.room.member", "b836560e4dfa8d77cc649956c5738dffec8539aaffe8c25f841a8479bffccbf9"),
    (9, "m.room.create", "1a3fd239b66a5be27edb2f347067c24f3fadb7d8e140e705ea35997f6a68ee46"),
    (9, "m.room.join_rules", "b9499bea6793ada93793797b841140c00a27ef6aad66aceec28be49564de6d85"),
    (9, "m.room.power_levels", "c1c9d3d8b820a9b1e38b27aa45cb8d82da0bb7a25811f5adfbc1110f3d2e9901"),
    (9, "m.room.aliases", "13bc778a91b6df953fc124c1a1e2c582ef786d9ff1b72b68b91c4ff5dccb99c2"),
    (10, "m.room.member", "b836560e4dfa8d77cc649956c5738dffec8539aaffe8c25f841a8479bffccbf9"),
    (10, "m.room.create", "1a3fd239b66a5be27edb2f347067c24f3fadb7d8e140e705ea35997f6a68ee46"),
    (10, "m.room.join_rules", "b9499bea6793ada93793797b841140c00a27ef6aad66aceec28be49564de6d85"),
    (10, "m.room.power_levels", "c1c9d3d8b820a9b1e38b27aa45cb8d82da0bb7a25811f5adfbc1110f3d2e9901"),
    (10, "m.room.aliases", "13bc778a91b6df953fc124c1a1e2c582ef786d9ff1b72b68b91c4ff5dccb99c2"),
    (11, "m.room.member", "e83eb6f9f60691206544251ed52997a92060e7d7ec6dd3f60046194f917b675b"),
    (11, "m.room.create", "5071237b311743e51e634ad2d2c464ef54a5f86a33b23a09dc5a85554e532912"),
    (11, "m.room.join_rules", "c08f21b8aeb3e1780416000f5d4e28ad4e880fa5d6e03359e50f0455de75fe32"),
    (11, "m.room.power_levels", "e863a75e61bb594341b16ecfade68d4bc6c14de6c9fd8b73ee139817618f59f4"),
    (11, "m.room.aliases", "02d836fcbd8066f60b5bfbde1b90b8a194d4fd27c511752b5499796f23b7adc5"),
    (12, "m.room.member", "e83eb6f9f60691206544251ed52997a92060e7d7ec6dd3f60046194f917b675b"),
    (12, "m.room.create", "495319111866a0766e3ae3162efb867a32f9d9018ec1d4e6ee10337355656320"),
    (12, "m.room.join_rules", "c08f21b8aeb3e1780416000f5d4e28ad4e880fa5d6e03359e50f0455de75fe32"),
    (12, "m.room.power_levels", "e863a75e61bb594341b16ecfade68d4bc6c14de6c9fd8b73ee139817618f59f4"),
    (12, "m.room.aliases", "02d836fcbd8066f60b5bfbde1b90b8a194d4fd27c511752b5499796f23b7adc5"),
]


def _synapse_event(version: int, event_type: str) -> dict[str, Any]:
    event = full_event(event_type)
    if version < 3:
        event["prev_events"] = [["$p:x", {"sha256": "abc"}]]
        event["auth_events"] = [["$a:x", {}]]
    else:
        del event["event_id"]
    if version >= 12 and event_type == "m.room.create":
        del event["room_id"]
    return event


@pytest.mark.parametrize(("version", "event_type", "expected"), SYNAPSE_REFERENCE_HASHES)
def test_reference_hashes_match_synapse(version: int, event_type: str, expected: str) -> None:
    assert reference_hash(_synapse_event(version, event_type), get_room_version(str(version))).hex() == expected
