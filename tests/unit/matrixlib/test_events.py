"""The Event wrapper: parsing, shape checks and format-independent accessors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from matrixlib.events import Event, EventFormatError
from matrixlib.hashes import compute_event_id, compute_room_id
from matrixlib.room_versions import get_room_version

V1 = get_room_version("1")
V3 = get_room_version("3")
V10 = get_room_version("10")
V11 = get_room_version("11")
V12 = get_room_version("12")


def pdu(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "m.room.message",
        "room_id": "!r:example.org",
        "sender": "@alice:example.org",
        "content": {"body": "hi"},
        "depth": 3,
        "origin_server_ts": 1000,
        "prev_events": ["$p1", "$p2"],
        "auth_events": ["$a1"],
        "hashes": {"sha256": "h"},
        "signatures": {},
    }
    event.update(overrides)
    return event


def v1_pdu(**overrides: Any) -> dict[str, Any]:
    return pdu(event_id="$e:example.org", prev_events=[["$p1:x", {"sha256": "h"}], ["$p2:x", {}]],
               auth_events=[["$a1:x", {}]], **overrides)


def test_v3_plus_event_id_is_reference_hash() -> None:
    event = Event(pdu(), V10)
    assert event.event_id == compute_event_id(pdu(), V10)
    assert event.prev_event_ids == ["$p1", "$p2"]
    assert event.auth_event_ids == ["$a1"]


def test_v3_plus_drops_stray_event_id() -> None:
    event = Event(pdu(event_id="$bogus"), V10)
    assert "event_id" not in event.pdu
    assert event.event_id == compute_event_id(pdu(), V10)


def test_v1_event_id_travels_in_event() -> None:
    event = Event(v1_pdu(), V1)
    assert event.event_id == "$e:example.org"
    assert event.prev_event_ids == ["$p1:x", "$p2:x"]
    assert event.auth_event_ids == ["$a1:x"]
    with pytest.raises(EventFormatError):
        Event(pdu(prev_events=[], auth_events=[]), V1)


def test_v1_event_id_given_separately() -> None:
    without = {k: v for k, v in v1_pdu().items() if k != "event_id"}
    event = Event(without, V1, event_id="$given:example.org")
    assert event.event_id == "$given:example.org"
    assert event.pdu["event_id"] == "$given:example.org"


@pytest.mark.parametrize(
    ("room_version", "refs"),
    [(V1, ["$p1"]), (V3, [["$p1", {}]]), (V10, "$p1"), (V10, [1])],
)
def test_reference_shape_per_format(room_version: Any, refs: Any) -> None:
    fields = {"prev_events": refs}
    base = v1_pdu() if room_version is V1 else pdu()
    with pytest.raises(EventFormatError):
        Event({**base, **fields}, room_version)


@pytest.mark.parametrize(
    "overrides",
    [
        {"type": 1},
        {"sender": None},
        {"state_key": 5},
        {"content": []},
        {"room_id": None},
        {"depth": "3"},
        {"depth": True},
        {"origin_server_ts": 1.5},
    ],
)
def test_shape_errors(overrides: dict[str, Any]) -> None:
    with pytest.raises(EventFormatError):
        Event(pdu(**overrides), V10)


def test_missing_content_is_a_shape_error() -> None:
    with pytest.raises(EventFormatError):
        Event({k: v for k, v in pdu().items() if k != "content"}, V10)


def test_from_json() -> None:
    event = Event.from_json(json.dumps(pdu()), V10)
    assert event.type == "m.room.message"
    for bad in ["not json", "[1]", '{"a":1,"a":2}', '{"type": NaN}']:
        with pytest.raises(EventFormatError):
            Event.from_json(bad, V10)


def test_to_json_is_canonical_and_round_trips() -> None:
    event = Event(pdu(), V10)
    data = event.to_json()
    assert data.startswith(b'{"auth_events":["$a1"],"content":{"body":"hi"}')
    assert Event.from_json(data, V10) == event


def test_to_json_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import matrixlib.events as events_module
    from matrixlib.canonical_json import encode_canonical_json as real

    calls: list[object] = []

    def counting(value: Any, *, strict: bool = True) -> bytes:
        calls.append(value)
        return real(value, strict=strict)

    monkeypatch.setattr(events_module, "encode_canonical_json", counting)
    event = Event(pdu(), V10)
    assert event.to_json() is event.to_json()
    assert len(calls) == 1


def test_to_json_of_old_room_version_tolerates_huge_integers() -> None:
    # v1-5 events may break the canonical JSON integer range.
    old = Event(pdu(content={"n": 2**60}), get_room_version("5"))
    assert b"1152921504606846976" in old.to_json()
    with pytest.raises(ValueError):
        Event(pdu(content={"n": 2**60}), get_room_version("6")).to_json()


def test_accessors() -> None:
    event = Event(pdu(type="m.room.member", state_key="@bob:example.org",
                      content={"membership": "invite"}, unsigned={"age": 3}), V10)
    assert event.is_state()
    assert event.state_key == "@bob:example.org"
    assert event.state_tuple == ("m.room.member", "@bob:example.org")
    assert event.membership == "invite"
    assert event.origin == "example.org"
    assert event.unsigned == {"age": 3}
    assert event.depth == 3 and event.origin_server_ts == 1000
    assert event.redacts is None
    message = Event(pdu(), V10)
    assert not message.is_state() and message.state_key is None and message.membership is None
    with pytest.raises(EventFormatError):
        _ = message.state_tuple


def test_redacts_location_per_version() -> None:
    old = Event(pdu(type="m.room.redaction", redacts="$target", content={}), V10)
    assert old.redacts == "$target"
    # v1-10 ignore content.redacts.
    assert Event(pdu(type="m.room.redaction", content={"redacts": "$t"}), V10).redacts is None
    new = Event(pdu(type="m.room.redaction", content={"redacts": "$target"}), V11)
    assert new.redacts == "$target"
    # v11+ ignore a top-level redacts.
    assert Event(pdu(type="m.room.redaction", redacts="$t", content={}), V11).redacts is None
    # Not a redaction: no redacts, whatever the keys say.
    assert Event(pdu(redacts="$t"), V10).redacts is None


def test_v12_create_event_room_id_is_derived() -> None:
    create = pdu(type="m.room.create", state_key="", content={"room_version": "12"},
                 prev_events=[], auth_events=[])
    del create["room_id"]
    event = Event(create, V12)
    assert event.room_id == compute_room_id(create, V12)
    assert event.room_id == "!" + event.event_id[1:]
    with pytest.raises(EventFormatError):
        Event(dict(create, room_id="!r:example.org"), V12)
    # Before v12 a create event needs its room_id.
    with pytest.raises(EventFormatError):
        Event(create, V11)
    # Only the state event with an empty state key is the room's create event.
    for not_the_create in ({k: v for k, v in create.items() if k != "state_key"}, dict(create, state_key="x")):
        with pytest.raises(EventFormatError):
            Event(not_the_create, V12)


def test_equality_and_hash_by_event_id() -> None:
    a, b = Event(pdu(), V10), Event(pdu(), V10)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Event(pdu(depth=4), V10)


def test_input_mapping_is_not_aliased() -> None:
    source = pdu()
    event = Event(source, V10)
    event.pdu["depth"] = 99
    assert source["depth"] == 3
