"""common.built_events: an event noted by the process that built it is taken
back by the room server's input parse from the same room version and JSON,
once; any other bytes are parsed as before."""

from __future__ import annotations

from myelin.roomserver.v1 import events_pb2, input_log_pb2

from common import built_events
from common.eventbuilder import RoomCreationRequest, build_room_creation_events
from matrixlib.events import Event
from matrixlib.room_versions import get_room_version
from matrixlib.signing import generate_signing_key
from roomserver.internal.input.processor import InputProcessor

SERVER = "built.test"
KEY = generate_signing_key("k1")


def _events(version: str = "11") -> list[Event]:
    return build_room_creation_events(
        RoomCreationRequest(creator=f"@alice:{SERVER}", room_version=get_room_version(version)),
        server_name=SERVER, signing_key=KEY, now_ms=1000).events


def _input(event: Event, version: str | None = None, pdu_json: bytes | None = None) -> input_log_pb2.InputRoomEvent:
    return input_log_pb2.InputRoomEvent(kind=input_log_pb2.INPUT_KIND_NEW, event=events_pb2.Event(
        event_id=event.event_id, room_version=version or event.room_version.identifier,
        pdu_json=pdu_json if pdu_json is not None else event.to_json()))


def test_a_noted_event_is_taken_back_once() -> None:
    event = _events()[0]
    built_events.note_built(event)
    assert InputProcessor.parse(_input(event)) is event
    # Taken: the next parse of the same bytes parses them.
    again = InputProcessor.parse(_input(event))
    assert again is not event
    assert again.event_id == event.event_id
    assert again.pdu == event.pdu


def test_other_bytes_or_version_are_parsed() -> None:
    event = _events()[1]
    built_events.note_built(event)
    # The same event in other (non-canonical) JSON: parsed from those bytes.
    spaced = event.to_json().replace(b'","', b'", "', 1)
    assert spaced != event.to_json()
    parsed = InputProcessor.parse(_input(event, pdu_json=spaced))
    assert parsed is not event and parsed.event_id == event.event_id
    # Another room version with the same bytes: not the noted event.
    other = InputProcessor.parse(_input(event, version="10"))
    assert other is not event and other.room_version.identifier == "10"
    assert built_events.take_built("11", event.to_json()) is event


def test_the_notes_are_bounded() -> None:
    events = [e for _ in range(built_events.BUILT_EVENTS_KEPT // 5 + 2) for e in _events()]
    assert len(events) > built_events.BUILT_EVENTS_KEPT
    for event in events:
        built_events.note_built(event)
    assert built_events.take_built("11", events[0].to_json()) is None
    assert built_events.take_built("11", events[-1].to_json()) is events[-1]
