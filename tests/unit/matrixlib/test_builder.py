"""Building events in every room version, and reading them back."""

from __future__ import annotations

from typing import Any

import pytest

from matrixlib.builder import MAX_DEPTH, build_event
from matrixlib.canonical_json import CanonicalJSONError
from matrixlib.events import Event, EventFormatError
from matrixlib.hashes import (
    check_content_hash,
    compute_event_id,
    compute_room_id,
    decode_base64,
    reference_hash_base64,
)
from matrixlib.ids import is_valid_event_id, is_valid_room_id
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion, get_room_version
from matrixlib.signing import (
    SigningKey,
    generate_signing_key,
    servers_that_must_sign,
    verify_event_signature,
)

SERVER = "hs.example"
ALICE = "@alice:hs.example"
ALL_VERSIONS = list(KNOWN_ROOM_VERSIONS)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_signing_key("k1")


def _build(room_version: RoomVersion, key: SigningKey, **fields: Any) -> Event:
    defaults: dict[str, Any] = {
        "room_id": "!room:hs.example",
        "type": "m.room.message",
        "sender": ALICE,
        "content": {"body": "hi"},
        "state_key": None,
        "prev_event_ids": [],
        "auth_event_ids": [],
        "depth": 1,
        "origin_server_ts": 1_700_000_000_000,
        "server_name": SERVER,
        "signing_key": key,
    }
    defaults.update(fields)
    return build_event(room_version, **defaults)


def _read_back(event: Event) -> Event:
    return Event.from_json(event.to_json(), event.room_version)


def _assert_verifies(event: Event, key: SigningKey) -> None:
    assert check_content_hash(event.pdu)
    for server in servers_that_must_sign(event):
        verify_event_signature(event.pdu, event.room_version, server, key.key_id, key.verify_key)


def _small_room(room_version: RoomVersion, key: SigningKey) -> list[Event]:
    """create, creator's join, power levels, a message and its redaction."""
    hydra = room_version.hydra
    create_content: dict[str, Any] = {"room_version": room_version.identifier}
    if not room_version.implicit_room_creator:
        create_content["creator"] = ALICE
    create = _build(room_version, key, room_id=None if hydra else "!room:hs.example",
                    type="m.room.create", state_key="", content=create_content)
    room_id = create.room_id
    join = _build(room_version, key, room_id=room_id, type="m.room.member", state_key=ALICE,
                  content={"membership": "join"}, prev_event_ids=[create.event_id],
                  auth_event_ids=[create.event_id], depth=2,
                  event_hashes={create.event_id: reference_hash_base64(create.pdu, room_version)})
    power = _build(room_version, key, room_id=room_id, type="m.room.power_levels", state_key="",
                   content={"users": {ALICE: 100}}, prev_event_ids=[join.event_id],
                   auth_event_ids=[create.event_id, join.event_id], depth=3)
    message = _build(room_version, key, room_id=room_id, prev_event_ids=[power.event_id],
                     auth_event_ids=[create.event_id, join.event_id, power.event_id], depth=4,
                     unsigned={"transaction_id": "t1"})
    redaction = _build(room_version, key, room_id=room_id, type="m.room.redaction", content={},
                       redacts=message.event_id, prev_event_ids=[message.event_id],
                       auth_event_ids=[create.event_id, join.event_id, power.event_id], depth=5)
    return [create, join, power, message, redaction]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_round_trip_every_version(version: str, key: SigningKey) -> None:
    room_version = get_room_version(version)
    for event in _small_room(room_version, key):
        read = _read_back(event)
        assert read.event_id == event.event_id
        assert read.pdu == event.pdu
        assert read.room_id == event.room_id
        assert is_valid_event_id(read.event_id, room_version)
        assert is_valid_room_id(read.room_id, room_version)
        _assert_verifies(read, key)
        assert SERVER in servers_that_must_sign(read)
        assert "origin" not in read.pdu


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_layout_per_version(version: str, key: SigningKey) -> None:
    room_version = get_room_version(version)
    create, join, power, message, redaction = _small_room(room_version, key)
    if room_version.event_format is EventFormat.V1:
        assert create.event_id.endswith(":" + SERVER)
        assert join.pdu["prev_events"] == [
            [create.event_id, {"sha256": reference_hash_base64(create.pdu, room_version)}]
        ]
        # A reference whose hash the caller did not give is sent with {}.
        assert power.pdu["auth_events"] == [[create.event_id, {}], [join.event_id, {}]]
        assert power.prev_event_ids == [join.event_id]
    else:
        assert "event_id" not in create.pdu
        assert create.event_id == compute_event_id(create.pdu, room_version)
        assert join.pdu["prev_events"] == [create.event_id]
    if room_version.hydra:
        assert "room_id" not in create.pdu
        assert create.room_id == compute_room_id(create.pdu, room_version)
        # The create event is implied by the room ID, never listed.
        assert join.pdu["auth_events"] == []
        assert power.pdu["auth_events"] == [join.event_id]
    else:
        assert create.pdu["room_id"] == "!room:hs.example"
        assert len(power.auth_event_ids) == 2
    if room_version.updated_redaction_rules:
        assert redaction.pdu["content"] == {"redacts": message.event_id}
        assert "redacts" not in redaction.pdu
    else:
        assert redaction.pdu["redacts"] == message.event_id
        assert redaction.pdu["content"] == {}
    assert redaction.redacts == message.event_id
    assert message.pdu["unsigned"] == {"transaction_id": "t1"}
    assert message.depth == 4 and message.origin_server_ts == 1_700_000_000_000
    assert power.state_key == "" and message.state_key is None and not message.is_state()


def test_content_is_copied_not_shared(key: SigningKey) -> None:
    content = {"body": "hi"}
    event = _build(get_room_version("10"), key, content=content)
    event.content["body"] = "changed"
    assert content == {"body": "hi"}


def test_v1_event_id_localpart(key: SigningKey) -> None:
    event = _build(get_room_version("1"), key, event_id_localpart="abc")
    assert event.event_id == "$abc:hs.example"
    with pytest.raises(EventFormatError):
        _build(get_room_version("4"), key, event_id_localpart="abc")


def test_v1_random_event_ids_differ(key: SigningKey) -> None:
    room_version = get_room_version("2")
    assert _build(room_version, key).event_id != _build(room_version, key).event_id


def test_v11_redacts_in_content_must_agree(key: SigningKey) -> None:
    room_version = get_room_version("11")
    event = _build(room_version, key, type="m.room.redaction", content={"redacts": "$x"}, redacts="$x")
    assert event.pdu["content"] == {"redacts": "$x"}
    with pytest.raises(EventFormatError):
        _build(room_version, key, type="m.room.redaction", content={"redacts": "$y"}, redacts="$x")


def test_redacts_only_on_redactions(key: SigningKey) -> None:
    with pytest.raises(EventFormatError):
        _build(get_room_version("10"), key, redacts="$x")


def test_room_id_rules(key: SigningKey) -> None:
    with pytest.raises(EventFormatError):
        _build(get_room_version("12"), key, type="m.room.create", state_key="", room_id="!room:hs.example",
               content={"room_version": "12"})
    with pytest.raises(EventFormatError):
        _build(get_room_version("11"), key, room_id=None)
    with pytest.raises(EventFormatError):
        _build(get_room_version("12"), key, room_id=None)


def test_floats_are_refused(key: SigningKey) -> None:
    for version in ("1", "12"):
        with pytest.raises(CanonicalJSONError):
            _build(get_room_version(version), key, content={"n": 1.5})


def test_depth_is_capped(key: SigningKey) -> None:
    assert _build(get_room_version("10"), key, depth=2**63).depth == MAX_DEPTH


def test_tampering_is_detected(key: SigningKey) -> None:
    from matrixlib.signing import SignatureError

    room_version = get_room_version("12")
    event = _build(room_version, key, room_id="!" + "A" * 43)
    tampered_content = dict(event.pdu, content={"body": "forged"})
    assert not check_content_hash(tampered_content)
    tampered_depth = dict(event.pdu, depth=99)
    with pytest.raises(SignatureError):
        verify_event_signature(tampered_depth, room_version, SERVER, key.key_id, key.verify_key)


# Event IDs of _small_room built with the spec's test key; Synapse 1.163
# loaded these very events and agreed on their IDs, room IDs, content
# hashes and signatures.
SYNAPSE_CHECKED_IDS = {
    "3": ["$HWtRq4Y5BI9QKnNrn/tTG5+WgpwqFDKQBYDUfChpSFI", "$zv3lzWhf1SYUxaHS0nYtiFn3txlmy/7GLOl7MP/cepw",
          "$Q8AkDAmoJ15q8yt62V3z4ZVEOVCkqXCpzsirBm0D/KQ", "$iFyS+nymTzlvIluI8RAzNMY33cHB0I9HRwm/KRfIIm4",
          "$QN/y4HjWj9EGQTuAh4zBOXkt55qXz7kINSoy1h4NYrU"],
    "4": ["$ebDCmU2zzsHTcIRokn9VujqtfCDfwiYZ0ugtHy29PVc", "$34qitKnPbzwtXzx5PRcD5IxyEzm_s_56lZQ1nuA36n8",
          "$FNsBBKK0o1PW6l3SwcwFZAaBZeIBHW7xPRmBH7ga75w", "$MbEaQ42yTBBdsvKs5bxs2aLG3D8CR4ijgj21ZBn23Ek",
          "$G4OSc0eAjDGzkPWE2oyG0JmuKhzU891P2ZAUTfMBt98"],
    "11": ["$PKH4r4-mtlxeQGqTBqmZGqGfm8l1VKbq1vwqC-eWH7Q", "$a0GoEvz5L-5MQJQYn9KiDQ4DzRXiQ7XukiL60J9H94k",
           "$2IaBq6V8sAxE3g5q7tIpVP2HHulgd2l_s9t_0_idj8M", "$ECh6a-oS8JDmTfgv0oUjatqV3X-T9CsyGC_2M1tBiao",
           "$Y2ExHdEQKk66wCIiQ0W9nh5YchAtqB0B_gOQLGStut4"],
    "12": ["$Mg7jFsLrDUQvJ7qsBsKzZJqKvbLRDpgaObupryAyoGM", "$w23Y3AT_Ew47F-KDT2II8ks7BAgH6VRU4JCZUyvVQW8",
           "$HNYTacNBUqZEem0Bu2DeCvVPKDoI6UWKwhVSEAVuFhI", "$1I6qYykbhIY-ANQFu2b6clVz2rLSxG8nlasXRoYi--o",
           "$NPD5y8KBFgOEugNyn5D1M58zR5Gh6CK6xkaJPRxCVDI"],
}


@pytest.mark.parametrize("version", sorted(SYNAPSE_CHECKED_IDS))
def test_event_ids_agree_with_synapse(version: str) -> None:
    spec_key = SigningKey.from_seed(decode_base64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"), "1")
    events = _small_room(get_room_version(version), spec_key)
    assert [e.event_id for e in events] == SYNAPSE_CHECKED_IDS[version]
    if version == "12":
        assert events[0].room_id == "!Mg7jFsLrDUQvJ7qsBsKzZJqKvbLRDpgaObupryAyoGM"
