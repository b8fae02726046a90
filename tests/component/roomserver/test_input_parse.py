"""The input call parses each event before the consumer of the same process
does; the consumer takes that parse instead of parsing the same bytes again,
and checks what it gets exactly as it checks a fresh parse."""

from __future__ import annotations

import pytest
from myelin.roomserver.v1 import input_log_pb2

from roomserver.internal.input.processor import InputProcessor, InvalidInput
from tests.builders import TestRoom, input_event


def test_the_consumer_takes_the_input_calls_parse_once() -> None:
    room = TestRoom("10", creator="@alice:test")
    message = room.message("@alice:test", "hi")
    given = input_event(message)
    first = InputProcessor.parse(given, remember=True)
    assert first.event_id == message.event_id
    assert InputProcessor.parse(given) is first
    # Taken, not kept: a second input of the same bytes is parsed anew.
    again = InputProcessor.parse(given)
    assert again is not first and again.event_id == first.event_id


def test_a_remembered_parse_is_checked_like_a_fresh_one() -> None:
    room = TestRoom("10", creator="@alice:test")
    message = room.message("@alice:test", "hi")
    InputProcessor.parse(input_event(message), remember=True)
    lying = input_log_pb2.InputRoomEvent()
    lying.CopyFrom(input_event(message))
    lying.event.event_id = "$not-this-one"
    with pytest.raises(InvalidInput, match="does not match"):
        InputProcessor.parse(lying)
    # The same JSON named with another room version is not the same parse.
    other_version = input_log_pb2.InputRoomEvent()
    other_version.CopyFrom(input_event(message))
    other_version.event.room_version = "11"
    remembered = InputProcessor.parse(input_event(message), remember=True)
    assert InputProcessor.parse(other_version) is not remembered
