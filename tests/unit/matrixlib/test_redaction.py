"""The redaction algorithm, version by version, transcribed from the spec's
keep-lists (rooms/fragments/v1-redactions, v6-redactions, rooms/v8,
v9-redactions, v11-redactions) rather than derived from the code's flags."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matrixlib.events import Event
from matrixlib.hashes import reference_hash
from matrixlib.redaction import redact, redact_event, redacted_view
from matrixlib.room_versions import get_room_version

ALL_VERSIONS = range(1, 13)

FULL_CONTENT: dict[str, dict[str, Any]] = {
    "m.room.member": {
        "membership": "join",
        "join_authorised_via_users_server": "@admin:example.org",
        "third_party_invite": {"display_name": "alice", "signed": {"mxid": "@a:b", "token": "t"}},
        "displayname": "Alice",
        "avatar_url": "mxc://example.org/a",
    },
    "m.room.create": {
        "creator": "@a:example.org",
        "room_version": "1",
        "m.federate": False,
        "predecessor": {"room_id": "!old:example.org"},
        "additional_creators": ["@b:example.org"],
    },
    "m.room.join_rules": {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "junk": 1},
    "m.room.power_levels": {
        "ban": 50, "events": {"m.room.name": 50}, "events_default": 0, "kick": 50, "redact": 50,
        "state_default": 50, "users": {"@a:example.org": 100}, "users_default": 0, "invite": 0,
        "notifications": {"room": 50},
    },
    "m.room.history_visibility": {"history_visibility": "shared", "junk": 1},
    "m.room.aliases": {"aliases": ["#a:example.org"], "junk": 1},
    "m.room.redaction": {"redacts": "$target", "reason": "spam"},
    "m.room.message": {"body": "hello", "msgtype": "m.text"},
    "m.room.name": {"name": "A room"},
    "m.room.guest_access": {"guest_access": "can_join"},
}


def versions(first: int, last: int) -> range:
    return range(first, last + 1)


# event type -> [(versions, content keys kept)]
EXPECTED_CONTENT: dict[str, list[tuple[range, set[str]]]] = {
    "m.room.member": [
        (versions(1, 8), {"membership"}),
        (versions(9, 10), {"membership", "join_authorised_via_users_server"}),
        (versions(11, 12), {"membership", "join_authorised_via_users_server", "third_party_invite"}),
    ],
    "m.room.create": [
        (versions(1, 10), {"creator"}),
        (versions(11, 12), set(FULL_CONTENT["m.room.create"])),
    ],
    "m.room.join_rules": [
        (versions(1, 7), {"join_rule"}),
        (versions(8, 12), {"join_rule", "allow"}),
    ],
    "m.room.power_levels": [
        (versions(1, 10), {"ban", "events", "events_default", "kick", "redact", "state_default", "users",
                           "users_default"}),
        (versions(11, 12), {"ban", "events", "events_default", "invite", "kick", "redact", "state_default",
                            "users", "users_default"}),
    ],
    "m.room.history_visibility": [(versions(1, 12), {"history_visibility"})],
    "m.room.aliases": [(versions(1, 5), {"aliases"}), (versions(6, 12), set())],
    "m.room.redaction": [(versions(1, 10), set()), (versions(11, 12), {"redacts"})],
    "m.room.message": [(versions(1, 12), set())],
    "m.room.name": [(versions(1, 12), set())],
    "m.room.guest_access": [(versions(1, 12), set())],
}

TOP_LEVEL_ALWAYS_KEPT = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures", "depth",
    "prev_events", "auth_events", "origin_server_ts",
}
TOP_LEVEL_KEPT_BEFORE_V11 = {"origin", "membership", "prev_state"}


def full_event(event_type: str) -> dict[str, Any]:
    return {
        "event_id": "$e:example.org",
        "type": event_type,
        "room_id": "!r:example.org",
        "sender": "@a:example.org",
        "state_key": "",
        "content": copy.deepcopy(FULL_CONTENT[event_type]),
        "hashes": {"sha256": "hash"},
        "signatures": {"example.org": {"ed25519:1": "sig"}},
        "depth": 4,
        "prev_events": ["$p"],
        "prev_state": [],
        "auth_events": ["$a"],
        "origin": "example.org",
        "origin_server_ts": 1234,
        "membership": "join",
        "redacts": "$target",
        "unsigned": {"age": 5},
        "junk": "x",
        "age_ts": 5,
    }


def content_cases() -> list[tuple[str, int, set[str]]]:
    cases = []
    for event_type, rows in EXPECTED_CONTENT.items():
        covered: list[int] = []
        for version_range, keys in rows:
            for version in version_range:
                cases.append((event_type, version, keys))
                covered.append(version)
        assert sorted(covered) == list(ALL_VERSIONS), event_type
    return cases


@pytest.mark.parametrize(("event_type", "version", "kept"), content_cases())
def test_content_keys_kept(event_type: str, version: int, kept: set[str]) -> None:
    redacted = redact(full_event(event_type), get_room_version(str(version)))
    assert set(redacted["content"]) == kept
    for key in kept - {"third_party_invite"}:
        assert redacted["content"][key] == FULL_CONTENT[event_type][key]


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("event_type", sorted(FULL_CONTENT))
def test_top_level_keys_kept(event_type: str, version: int) -> None:
    event = full_event(event_type)
    redacted = redact(event, get_room_version(str(version)))
    expected = TOP_LEVEL_ALWAYS_KEPT | (TOP_LEVEL_KEPT_BEFORE_V11 if version <= 10 else set())
    assert set(redacted) == expected
    # `redacts` (top level), `unsigned` and unknown keys never survive.
    assert not {"redacts", "unsigned", "junk", "age_ts"} & set(redacted)
    for key in expected - {"content"}:
        assert redacted[key] == event[key]


@pytest.mark.parametrize("version", [11, 12])
def test_v11_third_party_invite_keeps_only_signed(version: int) -> None:
    room_version = get_room_version(str(version))
    redacted = redact(full_event("m.room.member"), room_version)
    assert redacted["content"]["third_party_invite"] == {"signed": {"mxid": "@a:b", "token": "t"}}

    event = full_event("m.room.member")
    event["content"]["third_party_invite"] = {"display_name": "alice"}
    assert redact(event, room_version)["content"]["third_party_invite"] == {}

    event["content"]["third_party_invite"] = "not an object"
    assert "third_party_invite" not in redact(event, room_version)["content"]

    del event["content"]["third_party_invite"]
    assert "third_party_invite" not in redact(event, room_version)["content"]


def test_redaction_is_idempotent_and_leaves_input_alone() -> None:
    for version in ALL_VERSIONS:
        room_version = get_room_version(str(version))
        for event_type in FULL_CONTENT:
            event = full_event(event_type)
            before = copy.deepcopy(event)
            once = redact(event, room_version)
            assert event == before
            assert redact(once, room_version) == once


def test_redacted_copy_shares_nothing_with_the_input() -> None:
    event = full_event("m.room.power_levels")
    redacted = redact(event, get_room_version("10"))
    redacted["content"]["users"]["@x:y"] = 1
    redacted["signatures"]["example.org"]["ed25519:2"] = "x"
    redacted["prev_events"].append("$q")
    assert event == full_event("m.room.power_levels")


def test_absent_content_stays_absent_and_bad_content_becomes_empty() -> None:
    room_version = get_room_version("10")
    event = full_event("m.room.message")
    del event["content"]
    assert "content" not in redact(event, room_version)
    event["content"] = "not an object"
    assert redact(event, room_version)["content"] == {}


def test_state_key_kept_when_empty_and_absent_when_absent() -> None:
    room_version = get_room_version("12")
    event = full_event("m.room.message")
    del event["state_key"]
    assert "state_key" not in redact(event, room_version)


json_leaf = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=5)
json_value = st.recursive(
    json_leaf,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)
event_types = st.sampled_from(sorted(FULL_CONTENT)) | st.text(max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    version=st.sampled_from(list(ALL_VERSIONS)),
    event_type=event_types,
    content=st.dictionaries(
        st.sampled_from(sorted({k for c in FULL_CONTENT.values() for k in c})) | st.text(max_size=5),
        json_value, max_size=6),
    extra=st.dictionaries(st.text(max_size=8), json_value, max_size=4),
)
def test_redaction_properties(version: int, event_type: str, content: dict[str, Any],
                              extra: dict[str, Any]) -> None:
    room_version = get_room_version(str(version))
    event = {**extra, **{k: v for k, v in full_event("m.room.message").items() if k != "content"},
             "type": event_type, "content": content}
    redacted = redact(event, room_version)
    # Idempotent, keeps only keep-listed keys, and a redacted copy has the
    # same reference hash (so the same event ID) as the full event.
    assert redact(redacted, room_version) == redacted
    assert set(redacted) <= set(event)
    assert set(redacted["content"]) <= set(content)
    assert reference_hash(redacted, room_version) == reference_hash(event, room_version)
    # The view (for hashing and signing) is the same form, made without copying.
    before = copy.deepcopy(event)
    assert redacted_view(event, room_version) == redacted
    assert event == before


def test_redact_event_keeps_the_event_id() -> None:
    room_version = get_room_version("10")
    event = Event({k: v for k, v in full_event("m.room.message").items() if k != "event_id"}, room_version)
    redacted = redact_event(event)
    assert redacted.event_id == event.event_id
    assert redacted.content == {}
    assert event.content == FULL_CONTENT["m.room.message"]
