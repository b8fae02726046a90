"""``event_signed_bytes``: the one encoding a received event's ID and its
signature checks share, and ``verify_event_signatures`` given those bytes."""

from __future__ import annotations

import hashlib

import pytest

from matrixlib.events import Event
from matrixlib.hashes import compute_event_id, event_id_of_reference_hash
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS, EventFormat
from matrixlib.signing import (
    SignatureError,
    event_signed_bytes,
    generate_signing_key,
    verify_event_signatures,
)
from tests.builders import TestRoom

KEY = generate_signing_key("k")
SERVER = "a.example"


def _room(version: str) -> TestRoom:
    return TestRoom(version, creator=f"@rita:{SERVER}", server_name=SERVER, signing_key=KEY)


@pytest.mark.parametrize("version", sorted(KNOWN_ROOM_VERSIONS))
def test_the_bytes_hash_to_the_event_id_and_verify(version: str) -> None:
    room = _room(version)
    event = room.message(room.creator, "hello")
    signed = event_signed_bytes(event.pdu, event.room_version)
    if event.room_version.event_format is not EventFormat.V1:
        assert event_id_of_reference_hash(hashlib.sha256(signed).digest(), event.room_version) == \
            compute_event_id(event.pdu, event.room_version) == event.event_id
    keys = {SERVER: {KEY.key_id: KEY.verify_key}}
    verify_event_signatures(event, keys, signed)
    verify_event_signatures(event, keys)
    # The bytes of another event do not carry this event's signature.
    other = room.message(room.creator, "another")
    with pytest.raises(SignatureError):
        verify_event_signatures(event, keys, event_signed_bytes(other.pdu, other.room_version))


def test_strict_refuses_what_canonical_json_cannot_hold() -> None:
    room = _room("10")
    pdu = dict(room.message(room.creator, "hello").pdu)
    pdu["depth"] = 2**60
    event = Event(pdu, room.version)
    event_signed_bytes(event.pdu, event.room_version)  # lenient: old rooms' hashes are taken so
    with pytest.raises(ValueError):
        event_signed_bytes(event.pdu, event.room_version, strict=True)


def test_a_signature_that_is_not_a_string_fails() -> None:
    room = _room("10")
    pdu = dict(room.message(room.creator, "hello").pdu)
    pdu["signatures"] = {SERVER: {KEY.key_id: 1}}
    with pytest.raises(SignatureError):
        verify_event_signatures(Event(pdu, room.version), {SERVER: {KEY.key_id: KEY.verify_key}})
