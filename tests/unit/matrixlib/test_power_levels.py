"""Power levels: defaults, creators, and how each room version reads values."""

from __future__ import annotations

import math
from typing import Any

import pytest

from matrixlib.events import POWER_LEVELS, Event
from matrixlib.power_levels import (
    CREATOR_POWER_LEVEL,
    PowerLevels,
    is_creator,
    is_valid_user_id,
    parse_power_level,
    power_levels_content_problems,
    room_creators,
)
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS
from tests.unit.matrixlib.auth_fixtures import ALICE, ALL_VERSIONS, BOB, CAROL, Room, versions


def _power_levels_event(room: Room, content: dict[str, Any]) -> Event:
    return room.make(POWER_LEVELS, ALICE, content, state_key="")


@pytest.mark.parametrize("version", versions(1, 11))
def test_without_power_levels_the_creator_has_100(version: str) -> None:
    room = Room(version)
    levels = PowerLevels.from_state(room.state, room.room_version)
    assert not levels.has_power_levels_event
    assert levels.user_level(ALICE) == 100
    assert levels.user_level(BOB) == 0
    assert (levels.ban, levels.kick, levels.redact, levels.invite) == (50, 50, 50, 0)
    assert levels.events_level("m.room.name", is_state=True) == 50
    assert levels.events_level("m.room.message", is_state=False) == 0
    assert levels.notification_level("room") == 50


def test_without_power_levels_v12_creators_are_infinite() -> None:
    room = Room("12", create_content={"additional_creators": [BOB]})
    levels = PowerLevels.from_state(room.state, room.room_version)
    assert levels.user_level(ALICE) == CREATOR_POWER_LEVEL == math.inf
    assert levels.user_level(BOB) == math.inf
    assert levels.user_level(CAROL) == 0
    assert levels.user_level(ALICE) > 2**53


@pytest.mark.parametrize("version", versions(1, 10))
def test_creator_is_content_creator_before_v11(version: str) -> None:
    room = Room(version, create_content={"creator": BOB})
    assert room_creators(room.create) == {BOB}
    assert is_creator(BOB, room.create) and not is_creator(ALICE, room.create)
    levels = PowerLevels.from_state(room.state, room.room_version)
    assert levels.user_level(BOB) == 100
    assert levels.user_level(ALICE) == 0


@pytest.mark.parametrize("version", versions(11, 12))
def test_creator_is_the_create_sender_from_v11(version: str) -> None:
    room = Room(version, create_content={"creator": BOB})
    assert is_creator(ALICE, room.create)
    assert not is_creator(BOB, room.create)


def test_additional_creators_count_only_in_v12() -> None:
    v11 = Room("11", create_content={"additional_creators": [BOB]})
    v12 = Room("12", create_content={"additional_creators": [BOB]})
    assert room_creators(v11.create) == {ALICE}
    assert room_creators(v12.create) == {ALICE, BOB}
    assert is_creator(BOB, v12.create)
    # Reading does not fail on content the auth rules would have refused.
    odd_pdu = {**v12.create.pdu, "content": {"additional_creators": [BOB, 5]}}
    assert room_creators(Event(odd_pdu, v12.room_version, event_id="$odd")) == {ALICE, BOB}
    odd_pdu = {**v12.create.pdu, "content": {"additional_creators": BOB}}
    assert room_creators(Event(odd_pdu, v12.room_version, event_id="$odd")) == {ALICE}


@pytest.mark.parametrize("version", versions(1, 11))
def test_with_power_levels_the_creator_is_an_ordinary_user_before_v12(version: str) -> None:
    room = Room(version)
    event = _power_levels_event(room, {"users": {BOB: 75}, "users_default": 5})
    levels = PowerLevels.from_state(event, room.room_version, create_event=room.create)
    assert levels.has_power_levels_event
    assert levels.user_level(ALICE) == 5
    assert levels.user_level(BOB) == 75
    assert levels.user_level(CAROL) == 5


def test_with_power_levels_v12_creators_stay_infinite() -> None:
    room = Room("12", create_content={"additional_creators": [BOB]})
    # A creator listed in users (which the auth rules forbid) is still infinite.
    room.state[(POWER_LEVELS, "")] = _power_levels_event(room, {"users": {BOB: 1, CAROL: 60}})
    levels = PowerLevels.from_state(room.state, room.room_version)
    assert levels.user_level(ALICE) == math.inf
    assert levels.user_level(BOB) == math.inf
    assert levels.user_level(CAROL) == 60


def test_a_power_levels_event_alone_knows_no_creators() -> None:
    room = Room("12")
    event = _power_levels_event(room, {"users": {CAROL: 60}})
    assert PowerLevels.from_state(event, room.room_version).user_level(ALICE) == 0
    assert PowerLevels.from_state(event, room.room_version, create_event=room.create).user_level(ALICE) \
        == math.inf


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_levels_are_read_from_the_event(version: str) -> None:
    room = Room(version)
    content = {"ban": 1, "kick": 2, "redact": 3, "invite": 4, "events_default": 5, "state_default": 6,
               "events": {"m.room.name": 7}, "notifications": {"room": 8}}
    levels = PowerLevels.from_state(_power_levels_event(room, content), room.room_version)
    assert (levels.ban, levels.kick, levels.redact, levels.invite) == (1, 2, 3, 4)
    assert levels.events_level("m.room.message", is_state=False) == 5
    assert levels.events_level("m.room.topic", is_state=True) == 6
    assert levels.events_level("m.room.name", is_state=True) == 7
    assert levels.events_level("m.room.name", is_state=False) == 7
    assert levels.notification_level("room") == 8
    assert levels.notification_level("other") == 50


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_missing_properties_take_their_defaults(version: str) -> None:
    room = Room(version)
    levels = PowerLevels.from_state(_power_levels_event(room, {}), room.room_version)
    assert (levels.users_default, levels.events_default, levels.state_default) == (0, 0, 50)
    assert (levels.ban, levels.kick, levels.redact, levels.invite) == (50, 50, 50, 0)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_reading_is_lenient_about_values_it_cannot_parse(version: str) -> None:
    room = Room(version)
    content = {"ban": "lots", "users": {BOB: [1], CAROL: 7}, "events": "x", "kick": True}
    levels = PowerLevels.from_state(_power_levels_event(room, content), room.room_version)
    assert levels.ban == 50 and levels.kick == 50
    assert levels.user_level(BOB) == 0
    assert levels.user_level(CAROL) == 7
    assert levels.events == {}


@pytest.mark.parametrize("version", versions(1, 9))
@pytest.mark.parametrize(("value", "expected"), [
    ("100", 100), ("000100", 100), ("+100", 100), ("-100", -100), (" 100 ", 100), (" +100 ", 100),
    ("\t-7\n", -7), (42, 42), (-3, -3),
])
def test_string_values_are_integers_before_v10(version: str, value: Any, expected: int) -> None:
    assert parse_power_level(value, KNOWN_ROOM_VERSIONS[version]) == expected


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("value", ["1.5", "1e3", "", " ", "+-1", "1_000", "١٢", "0x10", None, True, False,
                                   [1], {"a": 1}])
def test_values_that_are_never_integers(version: str, value: Any) -> None:
    assert parse_power_level(value, KNOWN_ROOM_VERSIONS[version]) is None


@pytest.mark.parametrize("version", versions(10, 12))
def test_only_integers_from_v10(version: str) -> None:
    room_version = KNOWN_ROOM_VERSIONS[version]
    assert parse_power_level(50, room_version) == 50
    assert parse_power_level("50", room_version) is None
    assert parse_power_level(50.0, room_version) is None


@pytest.mark.parametrize("version", versions(1, 5))
def test_floats_are_truncated_until_v5(version: str) -> None:
    room_version = KNOWN_ROOM_VERSIONS[version]
    assert parse_power_level(50.57, room_version) == 50
    assert parse_power_level(5.114698e4, room_version) == 51146
    assert parse_power_level(-1.9, room_version) == -1
    assert parse_power_level(math.inf, room_version) is None
    assert parse_power_level(math.nan, room_version) is None


@pytest.mark.parametrize("version", versions(6, 12))
def test_floats_are_refused_from_v6(version: str) -> None:
    assert parse_power_level(50.57, KNOWN_ROOM_VERSIONS[version]) is None


@pytest.mark.parametrize("version", versions(1, 9))
def test_string_levels_are_read_before_v10(version: str) -> None:
    room = Room(version)
    content = {"ban": " 70 ", "users": {BOB: "+60"}, "events": {"m.room.name": "010"}}
    levels = PowerLevels.from_state(_power_levels_event(room, content), room.room_version)
    assert levels.ban == 70
    assert levels.user_level(BOB) == 60
    assert levels.events_level("m.room.name", is_state=True) == 10


@pytest.mark.parametrize("version", versions(10, 12))
def test_string_levels_are_ignored_from_v10(version: str) -> None:
    room = Room(version)
    content = {"ban": "70", "users": {BOB: "60"}}
    levels = PowerLevels.from_state(_power_levels_event(room, content), room.room_version)
    assert levels.ban == 50
    assert levels.user_level(BOB) == 0


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_content_problems_of_well_formed_content(version: str) -> None:
    content = {"users": {ALICE: 100}, "users_default": 0, "events": {"m.room.name": 50},
               "notifications": {"room": 50}, "ban": 50}
    assert power_levels_content_problems(content, KNOWN_ROOM_VERSIONS[version]) == []
    assert power_levels_content_problems({}, KNOWN_ROOM_VERSIONS[version]) == []


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_content_problems_name_what_is_wrong(version: str) -> None:
    room_version = KNOWN_ROOM_VERSIONS[version]
    assert power_levels_content_problems({"users": {"bob": 1}}, room_version) == \
        ["users key 'bob' is not a valid user ID"]
    assert power_levels_content_problems({"users": 5}, room_version) == ["users is not an object"]
    assert power_levels_content_problems({"events": [], "kick": None}, room_version) == \
        ["kick is not an integer", "events is not an object"]
    assert power_levels_content_problems({"notifications": {"room": "x"}}, room_version) == \
        ["notifications['room'] is not an integer"]


@pytest.mark.parametrize(("user_id", "valid"), [
    (ALICE, True), ("@:a.test", True), ("@Ünïcode:a.test", True), ("@a:1.2.3.4:8448", True),
    ("@a:[::1]", True), ("@a:a.test:99999", True),
    ("alice:a.test", False), ("@alice", False), ("@a:", False), ("@a\x00b:a.test", False),
    ("@a:bad_host", False), ("@" + "a" * 250 + ":a.test", False), (5, False), (None, False),
])
def test_user_id_validation(user_id: Any, valid: bool) -> None:
    assert is_valid_user_id(user_id) is valid


@pytest.mark.parametrize("version", ["10", "12"])
def test_levels_of_the_same_events_are_parsed_once(version: str) -> None:
    room = Room(version)
    event = _power_levels_event(room, {"users": {ALICE: 100, BOB: 40}, "ban": 60})
    create = room.state[("m.room.create", "")]
    state = {**room.state, (POWER_LEVELS, ""): event}
    first = PowerLevels.from_state(state, room.room_version)
    assert PowerLevels.from_state(state, room.room_version) is first
    assert PowerLevels.from_state(event, room.room_version, create_event=create) is first
    assert first.user_level(BOB) == 40 and first.ban == 60
    # Another event object (the same JSON, or other content): parsed anew.
    copy = Event.from_json(event.to_json(), room.room_version)
    again = PowerLevels.from_state(copy, room.room_version, create_event=create)
    assert again is not first and again == first
    other = _power_levels_event(room, {"users": {ALICE: 100, BOB: 70}})
    assert PowerLevels.from_state(other, room.room_version, create_event=create).user_level(BOB) == 70
    # Without the create event: v12 creators are not known, so not the same levels.
    without_create = PowerLevels.from_state(event, room.room_version)
    assert without_create is not first
    assert (without_create.creators == first.creators) == (version != "12")
