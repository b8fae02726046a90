"""The authorisation rules of room versions 1-12: each rule that can reject
an event, in the versions it applies to, and the paths that accept."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signedjson.key import generate_signing_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from matrixlib.auth_rules import (
    AuthError,
    auth_state_from_auth_events,
    auth_types_for_event,
    check_auth_events_list,
    check_auth_rules,
)
from matrixlib.events import (
    ALIASES,
    CREATE,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    REDACTION,
    THIRD_PARTY_INVITE,
    Event,
)
from tests.unit.matrixlib.auth_fixtures import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    DAVE,
    Room,
    standard_room,
    versions,
)


def assert_rejected(room: Room, event: Event, match: str) -> None:
    """Rejected against the room's state and against the event's own auth
    events (the auth events list itself being fine)."""
    with pytest.raises(AuthError, match=match):
        check_auth_rules(event, room.state)
    auth_events = room.auth_events_of(event)
    check_auth_events_list(event, auth_events)
    with pytest.raises(AuthError, match=match):
        check_auth_rules(event, auth_state_from_auth_events(auth_events, room.create))


# -- m.room.create --------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_event_of_a_normal_room_is_allowed(version: str) -> None:
    room = Room(version)
    check_auth_rules(room.create, {})
    assert room.create.room_id == ("!createevent0" if version == "12" else "!room:a.test")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_with_prev_events_is_rejected(version: str) -> None:
    room = Room(version)
    create = room.make(CREATE, BOB, dict(room.create.content), state_key="", prev=[room.create.event_id])
    with pytest.raises(AuthError, match="prev_events"):
        check_auth_rules(create, {})


@pytest.mark.parametrize("version", versions(1, 11))
def test_create_whose_room_id_domain_is_not_the_senders_is_rejected(version: str) -> None:
    room = Room(version)
    create = room.make(CREATE, BOB, {"creator": BOB}, state_key="", prev=[])
    with pytest.raises(AuthError, match="domain of the create event's room_id"):
        check_auth_rules(create, {})


def test_v12_create_with_a_room_id_is_rejected() -> None:
    room = Room("12")
    create = Event(dict(room.create.pdu), room.room_version, event_id="$other")
    # The Event class refuses such a PDU; the rule must hold on its own too.
    create.pdu["room_id"] = "!createevent0"
    with pytest.raises(AuthError, match="has a room_id"):
        check_auth_rules(create, {})


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_with_unknown_room_version_is_rejected(version: str) -> None:
    with pytest.raises(AuthError, match="unknown room version"):
        Room(version, create_content={"room_version": "999"})
    with pytest.raises(AuthError, match="unknown room version"):
        Room(version, create_content={"room_version": 12})


@pytest.mark.parametrize("version", versions(1, 10))
def test_create_without_creator_is_rejected_before_v11(version: str) -> None:
    room = Room(version)
    content = {k: v for k, v in room.create.content.items() if k != "creator"}
    create = room.make(CREATE, ALICE, content, state_key="", prev=[])
    with pytest.raises(AuthError, match="no creator"):
        check_auth_rules(create, {})


@pytest.mark.parametrize("version", versions(11, 12))
def test_create_without_creator_is_allowed_from_v11(version: str) -> None:
    room = Room(version)
    assert "creator" not in room.create.content
    check_auth_rules(room.create, {})


@pytest.mark.parametrize("additional", [
    "@bob:b.test",                  # not an array
    [BOB, 5],                       # not strings
    [BOB, "bob:b.test"],            # no sigil
    ["@bob"],                       # no server name
    ["@bob:bad_host!"],             # not a server name
])
def test_v12_create_with_malformed_additional_creators_is_rejected(additional: Any) -> None:
    with pytest.raises(AuthError, match="additional_creators"):
        Room("12", create_content={"additional_creators": additional})


def test_v12_create_with_additional_creators_is_allowed() -> None:
    room = Room("12", create_content={"additional_creators": [BOB, CAROL]})
    check_auth_rules(room.create, {})


def test_v11_ignores_additional_creators() -> None:
    room = Room("11", create_content={"additional_creators": "not checked"})
    check_auth_rules(room.create, {})


# -- auth events selection and the auth_events list ------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_types_for_a_message(version: str) -> None:
    room = standard_room(version)
    message = room.make("m.room.message", ALICE, {"body": "hi"})
    expected = [(POWER_LEVELS, ""), (MEMBER, ALICE)]
    if version != "12":
        expected.insert(0, (CREATE, ""))
    assert auth_types_for_event(message) == expected
    assert auth_types_for_event(room.create) == []


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_types_for_membership_events(version: str) -> None:
    room = standard_room(version)
    base = [] if version == "12" else [(CREATE, "")]
    base += [(POWER_LEVELS, ""), (MEMBER, BOB)]
    assert auth_types_for_event(room.member(BOB, BOB, "join")) == [*base, (JOIN_RULES, "")]
    assert auth_types_for_event(room.member(BOB, BOB, "knock")) == [*base, (JOIN_RULES, "")]
    assert auth_types_for_event(room.member(BOB, BOB, "leave")) == base
    invite = room.member(BOB, CAROL, "invite",
                         third_party_invite={"signed": {"mxid": CAROL, "token": "tok"}})
    assert auth_types_for_event(invite) == [*base, (MEMBER, CAROL), (JOIN_RULES, ""),
                                            (THIRD_PARTY_INVITE, "tok")]
    malformed = room.member(BOB, CAROL, "invite", third_party_invite={"signed": "x"})
    assert auth_types_for_event(malformed) == [*base, (MEMBER, CAROL), (JOIN_RULES, "")]
    restricted = room.member(BOB, BOB, "join", join_authorised_via_users_server=ALICE)
    expected = [*base, (JOIN_RULES, "")]
    if int(version) >= 8:
        expected.append((MEMBER, ALICE))
    assert auth_types_for_event(restricted) == expected


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_events_list_of_a_normal_event_is_accepted(version: str) -> None:
    room = standard_room(version)
    room.join(BOB)
    message = room.make("m.room.message", BOB, {"body": "hi"})
    assert len(message.auth_event_ids) == (2 if version == "12" else 3)
    check_auth_events_list(message, room.auth_events_of(message))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_events_list_with_duplicate_type_and_state_key_is_rejected(version: str) -> None:
    room = standard_room(version)
    old_power_levels = room.state[(POWER_LEVELS, "")]
    room.set_power_levels(dict(old_power_levels.content))
    auth = [e.event_id for e in room.auth_events_of(room.make("m.room.message", ALICE, {}))]
    message = room.make("m.room.message", ALICE, {}, auth=[*auth, old_power_levels.event_id])
    with pytest.raises(AuthError, match="two entries"):
        check_auth_events_list(message, room.auth_events_of(message))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_events_list_naming_one_event_twice_is_rejected(version: str) -> None:
    room = standard_room(version)
    auth = [e.event_id for e in room.auth_events_of(room.make("m.room.message", ALICE, {}))]
    message = room.make("m.room.message", ALICE, {}, auth=[*auth, auth[0]])
    with pytest.raises(AuthError, match="lists an event twice"):
        check_auth_events_list(message, room.auth_events_of(message))
    with pytest.raises(AuthError, match="lists an event twice"):
        check_auth_events_list(message, room.auth_events_of(message)[:-1])


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_events_list_with_an_event_not_selected_is_rejected(version: str) -> None:
    room = standard_room(version)
    join_rules = room.state[(JOIN_RULES, "")]
    auth = [e.event_id for e in room.auth_events_of(room.make("m.room.message", ALICE, {}))]
    message = room.make("m.room.message", ALICE, {}, auth=[*auth, join_rules.event_id])
    with pytest.raises(AuthError, match="not one the auth events selection picks"):
        check_auth_events_list(message, room.auth_events_of(message))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_events_list_with_a_rejected_event_is_rejected(version: str) -> None:
    room = standard_room(version)
    message = room.make("m.room.message", ALICE, {})
    power_levels_id = room.state[(POWER_LEVELS, "")].event_id
    check_auth_events_list(message, room.auth_events_of(message), rejected_event_ids={"$unrelated"})
    with pytest.raises(AuthError, match="was rejected"):
        check_auth_events_list(message, room.auth_events_of(message), rejected_event_ids={power_levels_id})


@pytest.mark.parametrize("version", versions(1, 11))
def test_auth_events_list_without_the_create_event_is_rejected(version: str) -> None:
    room = standard_room(version)
    auth = [room.state[(POWER_LEVELS, "")].event_id, room.state[(MEMBER, ALICE)].event_id]
    message = room.make("m.room.message", ALICE, {}, auth=auth)
    with pytest.raises(AuthError, match=r"no m\.room\.create event among the auth events"):
        check_auth_events_list(message, room.auth_events_of(message))


def test_v12_auth_events_list_with_the_create_event_is_rejected() -> None:
    room = standard_room("12")
    auth = [e.event_id for e in room.auth_events_of(room.make("m.room.message", ALICE, {}))]
    message = room.make("m.room.message", ALICE, {}, auth=[room.create.event_id, *auth])
    with pytest.raises(AuthError, match="must not be listed"):
        check_auth_events_list(message, room.auth_events_of(message))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_events_list_with_an_event_of_another_room_is_rejected(version: str) -> None:
    room = standard_room(version)
    other = standard_room(version)
    other.room_id = "!elsewhere:a.test"
    foreign_power_levels = other.make(POWER_LEVELS, ALICE, {"users": {}}, state_key="",
                                      event_id="$foreign:a.test" if version in ("1", "2") else "$foreign")
    room.force(foreign_power_levels)
    message = room.make("m.room.message", ALICE, {})
    with pytest.raises(AuthError, match=r"is in room !elsewhere:a\.test"):
        check_auth_events_list(message, room.auth_events_of(message))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_events_list_must_be_the_events_listed(version: str) -> None:
    room = standard_room(version)
    message = room.make("m.room.message", ALICE, {})
    auth_events = room.auth_events_of(message)
    with pytest.raises(AuthError, match="not the ones the event lists"):
        check_auth_events_list(message, auth_events[:-1])
    with pytest.raises(AuthError, match="not the ones the event lists"):
        check_auth_events_list(message, [*auth_events, room.state[(JOIN_RULES, "")]])


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_events_list_with_a_non_state_event_is_rejected(version: str) -> None:
    room = standard_room(version)
    first = room.send("m.room.message", ALICE, {"body": "one"})
    auth = [e.event_id for e in room.auth_events_of(room.make("m.room.message", ALICE, {}))]
    message = room.make("m.room.message", ALICE, {}, auth=[*auth, first.event_id])
    with pytest.raises(AuthError, match="not a state event"):
        check_auth_events_list(message, room.auth_events_of(message))


# -- state-wide rules --------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_no_create_event_in_the_state_is_rejected(version: str) -> None:
    room = standard_room(version)
    message = room.make("m.room.message", ALICE, {})
    state = {k: v for k, v in room.state.items() if k != (CREATE, "")}
    with pytest.raises(AuthError, match=r"no m\.room\.create event"):
        check_auth_rules(message, state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_event_of_another_room_is_rejected(version: str) -> None:
    # v12 rule 2: the room ID must be the create event's ID.
    room = standard_room(version)
    room.room_id = "!createevent1" if version == "12" else "!other:a.test"
    message = room.make("m.room.message", ALICE, {})
    with pytest.raises(AuthError, match="create event in the auth state is for room"):
        check_auth_rules(message, room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_unfederated_room_rejects_other_servers(version: str) -> None:
    room = Room(version, create_content={"m.federate": False})
    room.join(ALICE)
    room.set_join_rule("public")
    event = room.member(BOB, BOB, "join")
    assert_rejected(room, event, "m.federate")
    room.add(room.member("@alice2:a.test", "@alice2:a.test", "join"))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_only_a_boolean_false_m_federate_blocks_other_servers(version: str) -> None:
    # The spec says "set to false"; Synapse also blocks on any non-true value.
    room = Room(version, create_content={"m.federate": "false"})
    room.join(ALICE)
    room.set_join_rule("public")
    room.join(BOB)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_federated_room_accepts_other_servers(version: str) -> None:
    room = Room(version, create_content={"m.federate": True})
    room.join(ALICE)
    room.set_join_rule("public")
    room.join(BOB)


# -- m.room.aliases (v1-5) ------------------------------------------------------------------


@pytest.mark.parametrize("version", versions(1, 5))
def test_aliases_by_a_non_member_of_the_state_key_server_is_allowed_until_v5(version: str) -> None:
    room = standard_room(version)
    room.add(room.make(ALIASES, BOB, {"aliases": ["#x:b.test"]}, state_key="b.test"))


@pytest.mark.parametrize("version", versions(1, 5))
def test_aliases_for_another_server_is_rejected_until_v5(version: str) -> None:
    room = standard_room(version)
    assert_rejected(room, room.make(ALIASES, ALICE, {"aliases": []}, state_key="b.test"),
                    "state_key is not the sender's domain")


@pytest.mark.parametrize("version", versions(1, 5))
def test_aliases_without_state_key_is_rejected_until_v5(version: str) -> None:
    room = standard_room(version)
    assert_rejected(room, room.make(ALIASES, ALICE, {"aliases": []}), "no state_key")


@pytest.mark.parametrize("version", versions(6, 12))
def test_aliases_follow_the_ordinary_rules_from_v6(version: str) -> None:
    room = standard_room(version)
    assert_rejected(room, room.make(ALIASES, BOB, {"aliases": []}, state_key="b.test"),
                    "not joined")
    room.join(BOB)
    assert_rejected(room, room.make(ALIASES, BOB, {"aliases": []}, state_key="b.test"),
                    "below the 50 required")
    # The creator may set another server's aliases now.
    room.add(room.make(ALIASES, ALICE, {"aliases": []}, state_key="b.test"))


# -- m.room.member: general ------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_member_without_state_key_or_membership_is_rejected(version: str) -> None:
    room = standard_room(version)
    assert_rejected(room, room.make(MEMBER, BOB, {"membership": "join"}), "no state_key or no membership")
    assert_rejected(room, room.make(MEMBER, BOB, {}, state_key=BOB), "no state_key or no membership")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_unknown_membership_is_rejected(version: str) -> None:
    room = standard_room(version)
    assert_rejected(room, room.member(BOB, BOB, "dance"), "unknown membership")
    assert_rejected(room, room.make(MEMBER, BOB, {"membership": 1}, state_key=BOB), "unknown membership")


@pytest.mark.parametrize("version", versions(8, 12))
def test_join_authorised_via_users_server_needs_that_servers_signature(version: str) -> None:
    room = standard_room(version)
    # Even on a public join, and on a leave.
    assert_rejected(room, room.member(BOB, BOB, "join", join_authorised_via_users_server=ALICE),
                    "not signed by that user's server")
    room.join(BOB)
    assert_rejected(room, room.member(BOB, BOB, "leave", join_authorised_via_users_server=ALICE),
                    "not signed by that user's server")
    assert_rejected(room, room.member(BOB, BOB, "leave", join_authorised_via_users_server=5),
                    "not signed by that user's server")
    signed_leave = room.member(BOB, BOB, "leave", join_authorised_via_users_server=ALICE,
                               signatures={"b.test": {"ed25519:1": "x"}, "a.test": {"ed25519:1": "y"}})
    room.add(signed_leave)


@pytest.mark.parametrize("version", versions(1, 7))
def test_join_authorised_via_users_server_is_ignored_before_v8(version: str) -> None:
    room = standard_room(version)
    room.add(room.member(BOB, BOB, "join", join_authorised_via_users_server=ALICE))


# -- joins ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_creator_join_after_create_is_allowed(version: str) -> None:
    room = Room(version)
    room.join(ALICE)
    assert room.state[(MEMBER, ALICE)].membership == "join"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_first_join_by_someone_else_is_rejected(version: str) -> None:
    room = Room(version)
    # No join rules yet: the room is invite-only.
    assert_rejected(room, room.member(BOB, BOB, "join"), "invite-only")


@pytest.mark.parametrize("version", versions(1, 10))
def test_first_join_uses_content_creator_before_v11(version: str) -> None:
    # The sender of the create event is not the creator here.
    room = Room(version, creator=ALICE, create_content={"creator": "@alice2:a.test"})
    assert_rejected(room, room.member(ALICE, ALICE, "join"), "invite-only")
    room.join("@alice2:a.test")


@pytest.mark.parametrize("version", versions(11, 12))
def test_first_join_uses_create_sender_from_v11(version: str) -> None:
    room = Room(version, create_content={"creator": "@alice2:a.test"})
    assert_rejected(room, room.member("@alice2:a.test", "@alice2:a.test", "join"), "invite-only")
    room.join(ALICE)


def test_v12_additional_creator_cannot_make_the_first_join() -> None:
    room = Room("12", create_content={"additional_creators": [BOB]})
    assert_rejected(room, room.member(BOB, BOB, "join"), "invite-only")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_first_join_rule_needs_the_create_event_as_only_prev_event(version: str) -> None:
    room = Room(version)
    join = room.make(MEMBER, ALICE, {"membership": "join"}, state_key=ALICE,
                     prev=[room.create.event_id, "$other"])
    assert_rejected(room, join, "invite-only")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_second_user_joining_a_public_room_is_allowed(version: str) -> None:
    room = standard_room(version)
    room.join(BOB)
    room.send("m.room.message", BOB, {"body": "hello"})


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_join_for_someone_else_is_rejected(version: str) -> None:
    room = standard_room(version)
    assert_rejected(room, room.member(ALICE, BOB, "join"), "sender is not its state_key")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_banned_user_cannot_join(version: str) -> None:
    room = standard_room(version)
    room.join(BOB)
    room.add(room.member(ALICE, BOB, "ban"))
    assert_rejected(room, room.member(BOB, BOB, "join"), "banned")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_invite_only_room_needs_an_invite(version: str) -> None:
    room = standard_room(version, join_rule="invite")
    assert_rejected(room, room.member(BOB, BOB, "join"), "invite-only")
    room.add(room.member(ALICE, BOB, "invite"))
    room.join(BOB)
    # A joined user may join again (a profile change).
    room.join(BOB, displayname="Bob")


@pytest.mark.parametrize("version", versions(7, 12))
def test_knock_room_allows_invited_users_to_join_from_v7(version: str) -> None:
    room = standard_room(version, join_rule="knock")
    assert_rejected(room, room.member(BOB, BOB, "join"), "knock-only")
    room.add(room.member(ALICE, BOB, "invite"))
    room.join(BOB)


@pytest.mark.parametrize("version", versions(1, 6))
def test_knock_join_rule_is_unknown_before_v7(version: str) -> None:
    room = standard_room(version, join_rule="knock")
    room.add(room.member(ALICE, BOB, "invite"))
    assert_rejected(room, room.member(BOB, BOB, "join"), "join rule 'knock' does not allow")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_unknown_join_rule_rejects_joins(version: str) -> None:
    room = standard_room(version, join_rule="private")
    room.add(room.member(ALICE, BOB, "invite"))
    assert_rejected(room, room.member(BOB, BOB, "join"), "join rule 'private' does not allow")


def _restricted_room(version: str, join_rule: str) -> Room:
    room = standard_room(version, join_rule=join_rule, users={CAROL: 10}, invite=10)
    room.join(DAVE) if join_rule == "public" else None
    return room


def _authorised_join(room: Room, user: str, authoriser: str) -> Event:
    return room.member(user, user, "join", join_authorised_via_users_server=authoriser,
                       signatures={"b.test": {"ed25519:1": "x"}, "a.test": {"ed25519:1": "y"},
                                   "c.test": {"ed25519:1": "z"}})


RESTRICTED_CASES = [(v, "restricted") for v in versions(8, 12)] + \
    [(v, "knock_restricted") for v in versions(10, 12)]


@pytest.mark.parametrize(("version", "join_rule"), RESTRICTED_CASES)
def test_restricted_join_with_a_valid_authoriser_is_allowed(version: str, join_rule: str) -> None:
    room = standard_room(version, join_rule=join_rule)
    room.add(_authorised_join(room, BOB, ALICE))


@pytest.mark.parametrize(("version", "join_rule"), RESTRICTED_CASES)
def test_restricted_join_when_invited_needs_no_authoriser(version: str, join_rule: str) -> None:
    room = standard_room(version, join_rule=join_rule)
    room.add(room.member(ALICE, BOB, "invite"))
    room.join(BOB)


@pytest.mark.parametrize(("version", "join_rule"), RESTRICTED_CASES)
def test_restricted_join_without_authoriser_is_rejected(version: str, join_rule: str) -> None:
    room = standard_room(version, join_rule=join_rule)
    assert_rejected(room, room.member(BOB, BOB, "join"), "has no join_authorised_via_users_server")


@pytest.mark.parametrize(("version", "join_rule"), RESTRICTED_CASES)
def test_restricted_join_authorised_by_a_user_who_cannot_invite_is_rejected(version: str,
                                                                            join_rule: str) -> None:
    room = standard_room(version, join_rule="public", invite=10)
    room.join(CAROL)
    room.set_join_rule(join_rule)
    assert_rejected(room, _authorised_join(room, BOB, CAROL), "may not invite")


@pytest.mark.parametrize(("version", "join_rule"), RESTRICTED_CASES)
def test_restricted_join_authorised_by_a_user_at_exactly_the_invite_level(version: str,
                                                                         join_rule: str) -> None:
    room = standard_room(version, join_rule="public", users={CAROL: 10}, invite=10)
    room.join(CAROL)
    room.set_join_rule(join_rule)
    room.add(_authorised_join(room, BOB, CAROL))


@pytest.mark.parametrize(("version", "join_rule"), RESTRICTED_CASES)
def test_restricted_join_authorised_by_a_non_member_is_rejected(version: str, join_rule: str) -> None:
    room = standard_room(version, join_rule=join_rule, users={CAROL: 50})
    assert_rejected(room, _authorised_join(room, BOB, CAROL), "is not joined")


@pytest.mark.parametrize("version", versions(1, 7))
def test_restricted_join_rule_is_unknown_before_v8(version: str) -> None:
    room = standard_room(version, join_rule="restricted")
    assert_rejected(room, _authorised_join(room, BOB, ALICE), "join rule 'restricted' does not allow")


@pytest.mark.parametrize("version", versions(8, 9))
def test_knock_restricted_join_rule_is_unknown_before_v10(version: str) -> None:
    room = standard_room(version, join_rule="knock_restricted")
    room.add(room.member(ALICE, BOB, "invite"))
    assert_rejected(room, _authorised_join(room, BOB, ALICE), "join rule 'knock_restricted' does not allow")


# -- invites ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_invite_by_a_member_is_allowed(version: str) -> None:
    room = standard_room(version, join_rule="invite")
    room.add(room.member(ALICE, BOB, "invite"))
    room.join(BOB)
    room.add(room.member(BOB, CAROL, "invite"))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_invite_by_a_non_member_is_rejected(version: str) -> None:
    room = standard_room(version)
    assert_rejected(room, room.member(BOB, CAROL, "invite"), "inviter .* is not joined")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_invite_of_a_joined_or_banned_user_is_rejected(version: str) -> None:
    room = standard_room(version)
    room.join(BOB)
    assert_rejected(room, room.member(ALICE, BOB, "invite"), "membership is 'join'")
    room.add(room.member(ALICE, BOB, "ban"))
    assert_rejected(room, room.member(ALICE, BOB, "invite"), "membership is 'ban'")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_invite_below_the_invite_level_is_rejected(version: str) -> None:
    room = standard_room(version, invite=50)
    room.join(BOB)
    assert_rejected(room, room.member(BOB, CAROL, "invite"), "below the invite level")


# -- third-party invites ------------------------------------------------------------------------

IDENTITY_KEY = generate_signing_key("1")
IDENTITY_PUBLIC_KEY = encode_base64(IDENTITY_KEY.verify_key.encode())
OTHER_KEY = generate_signing_key("2")


def _signed(mxid: str, token: str = "tok", key: Any = IDENTITY_KEY) -> dict[str, Any]:
    return sign_json({"mxid": mxid, "token": token, "sender": ALICE}, "id.test", key)


def _room_with_third_party_invite(version: str, **invite_content: Any) -> Room:
    room = standard_room(version, join_rule="invite")
    content = {"display_name": "c...@example.org", "key_validity_url": "https://id.test/v",
               "public_key": IDENTITY_PUBLIC_KEY}
    content.update(invite_content)
    room.send(THIRD_PARTY_INVITE, ALICE, content, state_key="tok")
    return room


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_with_a_valid_signature_is_allowed(version: str) -> None:
    room = _room_with_third_party_invite(version)
    room.add(room.member(ALICE, CAROL, "invite",
                         third_party_invite={"display_name": "c", "signed": _signed(CAROL)}))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_verified_with_public_keys_list(version: str) -> None:
    room = _room_with_third_party_invite(
        version, public_key=encode_base64(OTHER_KEY.verify_key.encode()),
        public_keys=[{"public_key": "bm90IGEga2V5"}, {"public_key": IDENTITY_PUBLIC_KEY}])
    room.add(room.member(ALICE, CAROL, "invite", third_party_invite={"signed": _signed(CAROL)}))


def _url_safe_only_key() -> Any:
    """A signing key whose public key's base64 has a URL-safe character."""
    while True:
        key = generate_signing_key("3")
        if any(c in encode_base64(key.verify_key.encode(), urlsafe=True) for c in "-_"):
            return key


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_public_key_may_be_url_safe_base64(version: str) -> None:
    key = _url_safe_only_key()
    room = _room_with_third_party_invite(
        version, public_key=encode_base64(key.verify_key.encode(), urlsafe=True),
        public_keys=["not an object", {"public_key": 5}])
    room.add(room.member(ALICE, CAROL, "invite", third_party_invite={"signed": _signed(CAROL, key=key)}))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_of_a_banned_user_is_rejected(version: str) -> None:
    room = _room_with_third_party_invite(version)
    room.add(room.member(ALICE, CAROL, "ban"))
    assert_rejected(room, room.member(ALICE, CAROL, "invite", third_party_invite={"signed": _signed(CAROL)}),
                    "is banned")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_without_signed_is_rejected(version: str) -> None:
    room = _room_with_third_party_invite(version)
    assert_rejected(room, room.member(ALICE, CAROL, "invite", third_party_invite={}), "no signed object")
    assert_rejected(room, room.member(ALICE, CAROL, "invite", third_party_invite="x"), "no signed object")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_without_mxid_or_token_is_rejected(version: str) -> None:
    room = _room_with_third_party_invite(version)
    for missing in ("mxid", "token"):
        signed = {k: v for k, v in _signed(CAROL).items() if k != missing}
        assert_rejected(room, room.member(ALICE, CAROL, "invite", third_party_invite={"signed": signed}),
                        "no mxid or no token")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_for_another_mxid_is_rejected(version: str) -> None:
    room = _room_with_third_party_invite(version)
    assert_rejected(room, room.member(ALICE, CAROL, "invite", third_party_invite={"signed": _signed(DAVE)}),
                    "mxid is not the invited user")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_without_the_invite_event_is_rejected(version: str) -> None:
    room = _room_with_third_party_invite(version)
    event = room.member(ALICE, CAROL, "invite", third_party_invite={"signed": _signed(CAROL, token="nope")})
    assert_rejected(room, event, "no m.room.third_party_invite event")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_by_another_sender_is_rejected(version: str) -> None:
    room = _room_with_third_party_invite(version)
    room.add(room.member(ALICE, BOB, "invite"))
    room.join(BOB)
    assert_rejected(room, room.member(BOB, CAROL, "invite", third_party_invite={"signed": _signed(CAROL)}),
                    "did not send the m.room.third_party_invite")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_with_a_bad_signature_is_rejected(version: str) -> None:
    room = _room_with_third_party_invite(version)
    wrong_key = room.member(ALICE, CAROL, "invite", third_party_invite={"signed": _signed(CAROL, key=OTHER_KEY)})
    assert_rejected(room, wrong_key, "not signed by any")
    tampered = _signed(CAROL)
    tampered["extra"] = "field"
    assert_rejected(room, room.member(ALICE, CAROL, "invite", third_party_invite={"signed": tampered}),
                    "not signed by any")
    unsigned = {"mxid": CAROL, "token": "tok"}
    assert_rejected(room, room.member(ALICE, CAROL, "invite", third_party_invite={"signed": unsigned}),
                    "not signed by any")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_event_needs_the_invite_level(version: str) -> None:
    room = standard_room(version, invite=50)
    room.join(BOB)
    content = {"display_name": "x", "key_validity_url": "https://id.test/v", "public_key": IDENTITY_PUBLIC_KEY}
    assert_rejected(room, room.make(THIRD_PARTY_INVITE, BOB, content, state_key="t"),
                    "below the invite level, needed for m.room.third_party_invite")
    room.send(THIRD_PARTY_INVITE, ALICE, content, state_key="t")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_event_ignores_the_state_default(version: str) -> None:
    # Rule 7 allows it before the required power level (50) is consulted.
    room = standard_room(version)
    room.join(BOB)
    room.send(THIRD_PARTY_INVITE, BOB, {"public_key": IDENTITY_PUBLIC_KEY}, state_key="t")


# -- leaves and kicks ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_leaving_and_rejecting_an_invite_are_allowed(version: str) -> None:
    room = standard_room(version)
    room.join(BOB)
    room.add(room.member(BOB, BOB, "leave"))
    room.add(room.member(ALICE, CAROL, "invite"))
    room.add(room.member(CAROL, CAROL, "leave"))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_leaving_when_not_in_the_room_or_banned_is_rejected(version: str) -> None:
    room = standard_room(version)
    assert_rejected(room, room.member(BOB, BOB, "leave"), "cannot leave: their membership is None")
    room.join(BOB)
    room.add(room.member(BOB, BOB, "leave"))
    assert_rejected(room, room.member(BOB, BOB, "leave"), "membership is 'leave'")
    room.add(room.member(ALICE, BOB, "ban"))
    assert_rejected(room, room.member(BOB, BOB, "leave"), "membership is 'ban'")


@pytest.mark.parametrize("version", versions(7, 12))
def test_withdrawing_a_knock_is_allowed_from_v7(version: str) -> None:
    room = standard_room(version, join_rule="knock")
    room.add(room.member(BOB, BOB, "knock"))
    room.add(room.member(BOB, BOB, "leave"))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_kick_is_allowed(version: str) -> None:
    room = standard_room(version)
    room.join(BOB)
    room.add(room.member(ALICE, BOB, "leave"))
    # A kick of someone who is not in the room is a kick all the same.
    room.add(room.member(ALICE, CAROL, "leave"))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_kick_by_a_non_member_is_rejected(version: str) -> None:
    room = standard_room(version, users={BOB: 100} if version != "12" else {BOB: 90})
    room.join(CAROL)
    assert_rejected(room, room.member(BOB, CAROL, "leave"), "sender .* is not joined")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_kick_below_the_kick_level_is_rejected(version: str) -> None:
    room = standard_room(version, users={BOB: 40}, kick=50)
    room.join(BOB)
    room.join(CAROL)
    assert_rejected(room, room.member(BOB, CAROL, "leave"), "below the kick level")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_kick_of_an_equal_or_higher_user_is_rejected(version: str) -> None:
    room = standard_room(version, users={BOB: 60, CAROL: 60, DAVE: 70})
    for user in (BOB, CAROL, DAVE):
        room.join(user)
    assert_rejected(room, room.member(BOB, CAROL, "leave"), "not above the target's")
    assert_rejected(room, room.member(BOB, DAVE, "leave"), "not above the target's")
    room.add(room.member(DAVE, BOB, "leave"))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_unban_needs_the_ban_level(version: str) -> None:
    room = standard_room(version, users={BOB: 60}, kick=50, ban=70)
    room.join(BOB)
    room.add(room.member(ALICE, CAROL, "ban"))
    assert_rejected(room, room.member(BOB, CAROL, "leave"), "below the ban level, needed to unban")
    room.add(room.member(ALICE, CAROL, "leave"))
    room.join(CAROL)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_kick_and_unban_at_exactly_the_required_levels(version: str) -> None:
    room = standard_room(version, users={BOB: 60, CAROL: 59}, kick=60, ban=60)
    room.join(BOB)
    room.join(CAROL)
    room.add(room.member(BOB, CAROL, "leave"))
    room.add(room.member(BOB, CAROL, "ban"))
    room.add(room.member(BOB, CAROL, "leave"))


# -- bans -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_ban_is_allowed(version: str) -> None:
    room = standard_room(version)
    room.join(BOB)
    room.add(room.member(ALICE, BOB, "ban"))
    room.add(room.member(ALICE, CAROL, "ban"))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_ban_by_a_non_member_is_rejected(version: str) -> None:
    room = standard_room(version, users={BOB: 90})
    assert_rejected(room, room.member(BOB, CAROL, "ban"), "sender .* is not joined")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_ban_below_the_ban_level_or_of_a_peer_is_rejected(version: str) -> None:
    room = standard_room(version, users={BOB: 40, CAROL: 60, DAVE: 60})
    for user in (BOB, CAROL, DAVE):
        room.join(user)
    assert_rejected(room, room.member(BOB, "@eve:e.test", "ban"), "below the ban level")
    assert_rejected(room, room.member(CAROL, DAVE, "ban"), "not above the target's")
    room.add(room.member(CAROL, BOB, "ban"))


# -- knocks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "join_rule"),
                         [(v, "knock") for v in versions(7, 12)] + [(v, "knock_restricted") for v in versions(10, 12)])
def test_knock_is_allowed(version: str, join_rule: str) -> None:
    room = standard_room(version, join_rule=join_rule)
    room.add(room.member(BOB, BOB, "knock"))
    room.add(room.member(ALICE, BOB, "invite"))
    room.join(BOB)


@pytest.mark.parametrize("version", versions(7, 12))
def test_knock_on_a_room_that_does_not_allow_knocking_is_rejected(version: str) -> None:
    for join_rule in ("public", "invite", "restricted"):
        room = standard_room(version, join_rule=join_rule)
        assert_rejected(room, room.member(BOB, BOB, "knock"), "does not allow knocking")


@pytest.mark.parametrize("version", versions(7, 9))
def test_knock_on_knock_restricted_is_rejected_before_v10(version: str) -> None:
    room = standard_room(version, join_rule="knock_restricted")
    assert_rejected(room, room.member(BOB, BOB, "knock"), "does not allow knocking")


@pytest.mark.parametrize("version", versions(7, 12))
def test_knock_for_someone_else_is_rejected(version: str) -> None:
    room = standard_room(version, join_rule="knock")
    assert_rejected(room, room.member(BOB, CAROL, "knock"), "sender is not its state_key")


@pytest.mark.parametrize("version", versions(7, 12))
def test_knock_by_a_banned_invited_or_joined_user_is_rejected(version: str) -> None:
    room = standard_room(version, join_rule="knock")
    room.add(room.member(ALICE, BOB, "invite"))
    assert_rejected(room, room.member(BOB, BOB, "knock"), "membership is 'invite'")
    room.join(BOB)
    assert_rejected(room, room.member(BOB, BOB, "knock"), "membership is 'join'")
    room.add(room.member(ALICE, BOB, "ban"))
    assert_rejected(room, room.member(BOB, BOB, "knock"), "membership is 'ban'")


@pytest.mark.parametrize("version", versions(1, 6))
def test_knock_membership_is_unknown_before_v7(version: str) -> None:
    room = standard_room(version, join_rule="knock")
    assert_rejected(room, room.member(BOB, BOB, "knock"), "unknown membership 'knock'")


# -- other events -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_event_from_a_non_member_is_rejected(version: str) -> None:
    room = standard_room(version)
    assert_rejected(room, room.make("m.room.message", BOB, {"body": "x"}), "not joined")
    room.add(room.member(ALICE, BOB, "invite"))
    assert_rejected(room, room.make("m.room.message", BOB, {"body": "x"}), "not joined")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_event_below_its_required_power_level_is_rejected(version: str) -> None:
    room = standard_room(version, events_default=10, events={"m.room.name": 30, "m.custom": 5})
    room.join(BOB)
    assert_rejected(room, room.make("m.room.message", BOB, {}), "below the 10 required")
    assert_rejected(room, room.make("m.room.topic", BOB, {}, state_key=""), "below the 50 required")
    assert_rejected(room, room.make("m.room.name", BOB, {}, state_key=""), "below the 30 required")
    assert_rejected(room, room.make("m.custom", BOB, {}), "below the 5 required")
    room.send("m.room.name", ALICE, {"name": "n"}, state_key="")
    room.send("m.room.message", ALICE, {"body": "x"})


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_state_without_power_levels_uses_defaults(version: str) -> None:
    room = Room(version)
    room.join(ALICE)
    room.set_join_rule("public")
    room.join(BOB)
    room.send("m.room.message", BOB, {})
    assert_rejected(room, room.make("m.room.topic", BOB, {}, state_key=""), "below the 50 required")
    room.send("m.room.topic", ALICE, {"topic": "t"}, state_key="")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_join_rules_need_the_state_level(version: str) -> None:
    room = standard_room(version, join_rule="invite", users={BOB: 49, CAROL: 50})
    for user in (BOB, CAROL):
        room.add(room.member(ALICE, user, "invite"))
        room.join(user)
    assert_rejected(room, room.make(JOIN_RULES, BOB, {"join_rule": "public"}, state_key=""),
                    "below the 50 required for m.room.join_rules")
    room.set_join_rule("public", sender=CAROL)
    room.set_join_rule("invite")
    assert room.state[(JOIN_RULES, "")].content == {"join_rule": "invite"}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_state_key_of_another_user_is_rejected(version: str) -> None:
    room = standard_room(version, state_default=0)
    room.join(BOB)
    assert_rejected(room, room.make("m.custom", BOB, {}, state_key=CAROL), "state_key is a user ID")
    assert_rejected(room, room.make("m.custom", ALICE, {}, state_key=BOB), "state_key is a user ID")
    room.send("m.custom", BOB, {}, state_key=BOB)
    room.send("m.custom", BOB, {}, state_key="not@user")


# -- m.room.power_levels ------------------------------------------------------------------------


def _power_room(version: str, users: dict[str, int] | None = None, **levels: Any) -> Room:
    """Alice (creator), Bob at 50, Carol at 50, Dave at 0; all joined."""
    room = standard_room(version, users={BOB: 50, CAROL: 50, **(users or {})}, **levels)
    for user in (BOB, CAROL, DAVE):
        room.join(user)
    return room


def _set(room: Room, sender: str, **changes: Any) -> Event:
    content = dict(room.state[(POWER_LEVELS, "")].content)
    content.update(changes)
    return room.make(POWER_LEVELS, sender, content, state_key="")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_first_power_levels_event_is_allowed(version: str) -> None:
    room = Room(version)
    room.join(ALICE)
    users = {BOB: 100, CAROL: 50} if version == "12" else {ALICE: 100, BOB: 100}
    room.set_power_levels({"users": users, "ban": 100, "events": {"m.room.name": 100}})


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("users", [[], "x", {"alice": 1}, {"@alice": 1}, {BOB: "abc"}, {BOB: None},
                                   {BOB: True}, {BOB: "1.5"}, {BOB: [1]}])
def test_power_levels_with_malformed_users_is_rejected(version: str, users: Any) -> None:
    room = Room(version)
    room.join(ALICE)
    assert_rejected(room, room.make(POWER_LEVELS, ALICE, {"users": users}, state_key=""),
                    "malformed power levels")


@pytest.mark.parametrize("version", versions(1, 9))
@pytest.mark.parametrize("value", ["50", " +50 ", "-0050", "\t7\n"])
def test_string_power_levels_are_allowed_before_v10(version: str, value: str) -> None:
    room = _power_room(version)
    room.add(_set(room, ALICE, users={**room.state[(POWER_LEVELS, "")].content["users"], DAVE: value},
                  ban=value, events={"m.room.name": value}, notifications={"room": value}))


@pytest.mark.parametrize("version", versions(10, 12))
@pytest.mark.parametrize("field", ["users_default", "events_default", "state_default", "ban", "redact",
                                   "kick", "invite", "events", "notifications", "users"])
def test_string_power_levels_are_rejected_from_v10(version: str, field: str) -> None:
    room = _power_room(version)
    value: Any = {"m.x" if field != "users" else DAVE: "50"} if field in ("events", "notifications", "users") \
        else "50"
    assert_rejected(room, _set(room, ALICE, **{field: value}), f"malformed power levels: {field}")


@pytest.mark.parametrize("version", versions(10, 12))
def test_events_and_notifications_must_be_objects_from_v10(version: str) -> None:
    room = _power_room(version)
    assert_rejected(room, _set(room, ALICE, events=[1]), "events is not an object")
    assert_rejected(room, _set(room, ALICE, notifications=5), "notifications is not an object")


@pytest.mark.parametrize("version", versions(1, 5))
def test_float_power_levels_are_allowed_until_v5(version: str) -> None:
    room = _power_room(version)
    room.add(_set(room, ALICE, ban=50.9, users={ALICE: 100, BOB: 50.57, CAROL: 50}))
    # 50.57 is 50: Carol (50) still cannot be changed by Bob (50).
    assert_rejected(room, _set(room, BOB, users={ALICE: 100, BOB: 50, CAROL: 0}), "who has 50")


@pytest.mark.parametrize("version", versions(6, 12))
def test_float_power_levels_are_rejected_from_v6(version: str) -> None:
    room = _power_room(version)
    assert_rejected(room, _set(room, ALICE, ban=50.5), "malformed power levels: ban")


@pytest.mark.parametrize("version", versions(1, 9))
def test_unparseable_named_levels_are_rejected_before_v10(version: str) -> None:
    room = _power_room(version)
    assert_rejected(room, _set(room, ALICE, kick="lots"), "malformed power levels: kick")
    assert_rejected(room, _set(room, ALICE, events={"m.room.name": "lots"}), "malformed power levels")


def test_v12_power_levels_must_not_list_creators() -> None:
    room = Room("12", create_content={"additional_creators": [BOB]})
    room.join(ALICE)
    assert_rejected(room, room.make(POWER_LEVELS, ALICE, {"users": {ALICE: 100}}, state_key=""),
                    "must not include the room's creators")
    assert_rejected(room, room.make(POWER_LEVELS, ALICE, {"users": {BOB: 100}}, state_key=""),
                    "must not include the room's creators")
    room.set_power_levels({"users": {CAROL: 100}})


@pytest.mark.parametrize("version", versions(1, 11))
def test_creator_may_be_listed_in_power_levels_before_v12(version: str) -> None:
    room = Room(version, create_content={"additional_creators": [BOB]})
    room.join(ALICE)
    room.set_power_levels({"users": {ALICE: 100, BOB: 100}})


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("name", ["users_default", "events_default", "state_default", "ban", "redact",
                                  "kick", "invite"])
def test_changing_a_named_level_above_the_sender_is_rejected(version: str, name: str) -> None:
    # (The power levels event's own level stays 50, whatever state_default is.)
    levels: dict[str, Any] = {name: 40}
    room = _power_room(version, events={POWER_LEVELS: 50}, **levels)
    room.add(_set(room, BOB, **{name: 50}))          # 40 -> 50, both <= Bob's 50
    assert_rejected(room, _set(room, BOB, **{name: 51}), f"{name} would be 51")
    room.add(_set(room, ALICE, **{name: 60}))
    assert_rejected(room, _set(room, BOB, **{name: 0}), f"{name} is 60")
    # Removing a level counts as a change of it.
    content = {k: v for k, v in room.state[(POWER_LEVELS, "")].content.items() if k != name}
    assert_rejected(room, room.make(POWER_LEVELS, BOB, content, state_key=""), f"{name} is 60")
    room.add(room.make(POWER_LEVELS, ALICE, content, state_key=""))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_changing_events_levels_above_the_sender_is_rejected(version: str) -> None:
    room = _power_room(version, events={"m.room.name": 60, "m.room.topic": 10})
    room.add(_set(room, BOB, events={"m.room.name": 60, "m.room.topic": 50, "m.new": 50}))
    assert_rejected(room, _set(room, BOB, events={"m.room.name": 60, "m.room.topic": 51}), "would be 51")
    assert_rejected(room, _set(room, BOB, events={"m.room.name": 40}), r"\['m.room.name'\] is 60")
    assert_rejected(room, _set(room, BOB, events={"m.room.topic": 50}), r"\['m.room.name'\] is 60")


@pytest.mark.parametrize("version", versions(6, 12))
def test_changing_notifications_above_the_sender_is_rejected_from_v6(version: str) -> None:
    room = _power_room(version, notifications={"room": 60})
    assert_rejected(room, _set(room, BOB, notifications={"room": 0}), r"notifications\['room'\] is 60")
    assert_rejected(room, _set(room, BOB, notifications={"room": 60, "x": 70}), "would be 70")
    room.add(_set(room, ALICE, notifications={"room": 50}))
    room.add(_set(room, BOB, notifications={"room": 20}))


@pytest.mark.parametrize("version", versions(1, 5))
def test_notifications_are_not_protected_until_v5(version: str) -> None:
    room = _power_room(version, notifications={"room": 60})
    room.add(_set(room, BOB, notifications={"room": 0, "x": 70}))


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_changing_users_at_or_above_the_sender_is_rejected(version: str) -> None:
    room = _power_room(version, events={POWER_LEVELS: 0})
    alice = {} if version == "12" else {ALICE: 100}
    # Bob (50) may not demote Carol (50) nor remove her entry...
    assert_rejected(room, _set(room, BOB, users={**alice, BOB: 50, CAROL: 0}), "who has 50")
    assert_rejected(room, _set(room, BOB, users={**alice, BOB: 50}), "who has 50")
    # ...nor raise Dave above himself...
    assert_rejected(room, _set(room, BOB, users={**alice, BOB: 50, CAROL: 50, DAVE: 51}),
                    "cannot give @dave:d.test 51")
    # ...but may raise Dave to his level, and lower himself.
    room.add(_set(room, BOB, users={**alice, BOB: 50, CAROL: 50, DAVE: 50}))
    room.add(_set(room, BOB, users={**alice, BOB: 10, CAROL: 50, DAVE: 50}))
    assert_rejected(room, _set(room, BOB, users={**alice, BOB: 50, CAROL: 50, DAVE: 50}),
                    "cannot give @bob:b.test 50")


@pytest.mark.parametrize("version", versions(1, 11))
def test_creator_with_100_can_be_demoted_by_nobody_else_before_v12(version: str) -> None:
    room = _power_room(version, users={BOB: 100})
    assert_rejected(room, _set(room, BOB, users={ALICE: 0, BOB: 100, CAROL: 50}), "who has 100")
    # The creator may lower themselves; then the creator is an ordinary user.
    room.add(_set(room, ALICE, users={ALICE: 10, BOB: 100, CAROL: 50}))
    room.add(_set(room, BOB, users={ALICE: 0, BOB: 100, CAROL: 50}))
    assert_rejected(room, room.make("m.room.topic", ALICE, {}, state_key=""), "below the 50 required")


def test_v12_creators_have_infinite_power() -> None:
    room = Room("12", create_content={"additional_creators": [BOB]})
    room.join(ALICE)
    room.set_power_levels({"users": {CAROL: 2**53 - 1}, "state_default": 2**53 - 1,
                           "events": {"m.room.tombstone": 2**53 - 1}})
    room.set_join_rule("public")
    room.join(BOB)
    room.join(CAROL)
    # An additional creator outranks the highest possible level...
    room.add(room.member(BOB, CAROL, "ban"))
    room.send("m.room.tombstone", BOB, {"body": "x", "replacement_room": "!new"}, state_key="")
    room.add(_set(room, BOB, users={}, state_default=0))
    # ...and creators do not outrank each other.
    assert_rejected(room, room.member(ALICE, BOB, "leave"), "not above the target's")
    assert_rejected(room, room.member(BOB, ALICE, "ban"), "not above the target's")


def test_v12_creator_needs_no_power_levels_event() -> None:
    room = Room("12", create_content={"additional_creators": [BOB]})
    room.join(ALICE)
    room.set_join_rule("public")
    room.join(BOB)
    room.send("m.room.name", BOB, {"name": "n"}, state_key="")
    room.join(CAROL)
    assert_rejected(room, room.make("m.room.name", CAROL, {}, state_key=""), "below the 50 required")


@pytest.mark.parametrize("version", versions(1, 11))
def test_additional_creators_are_ordinary_users_before_v12(version: str) -> None:
    room = Room(version, create_content={"additional_creators": [BOB]})
    room.join(ALICE)
    room.set_join_rule("public")
    room.join(BOB)
    assert_rejected(room, room.make("m.room.name", BOB, {}, state_key=""), "below the 50 required")


# -- redactions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", versions(1, 2))
def test_v1_redaction_rules(version: str) -> None:
    room = _power_room(version, redact=50)
    carol_message = room.send("m.room.message", CAROL, {"body": "c"})
    dave_message = room.send("m.room.message", DAVE, {"body": "d"})
    # Bob (50) may redact anything; Dave (0) only events of his own server.
    room.add(room.make(REDACTION, BOB, {}, redacts=carol_message.event_id))
    room.add(room.make(REDACTION, DAVE, {}, redacts=dave_message.event_id))
    assert_rejected(room, room.make(REDACTION, DAVE, {}, redacts=carol_message.event_id),
                    "below the redact level")
    assert_rejected(room, room.make(REDACTION, DAVE, {}), "below the redact level")


@pytest.mark.parametrize("version", versions(3, 12))
def test_redact_level_is_not_an_auth_rule_from_v3(version: str) -> None:
    room = _power_room(version, redact=50)
    carol_message = room.send("m.room.message", CAROL, {"body": "c"})
    if int(version) >= 11:
        redaction = room.make(REDACTION, DAVE, {"redacts": carol_message.event_id})
    else:
        redaction = room.make(REDACTION, DAVE, {}, redacts=carol_message.event_id)
    assert redaction.redacts == carol_message.event_id
    room.add(redaction)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_redaction_needs_its_event_level(version: str) -> None:
    room = _power_room(version, events={REDACTION: 30})
    message = room.send("m.room.message", DAVE, {"body": "d"})
    assert_rejected(room, room.make(REDACTION, DAVE, {"redacts": message.event_id}, redacts=message.event_id),
                    "below the 30 required")


# -- robustness ----------------------------------------------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
_member_content = st.fixed_dictionaries(
    {}, optional={
        "membership": st.sampled_from(["join", "invite", "leave", "ban", "knock"]) | _json,
        "third_party_invite": _json | st.fixed_dictionaries({"signed": _json}),
        "join_authorised_via_users_server": st.sampled_from([ALICE, BOB]) | _json,
    })
_power_levels_content = st.fixed_dictionaries(
    {}, optional={name: _json for name in ("users", "users_default", "events", "events_default",
                                           "state_default", "ban", "kick", "redact", "invite",
                                           "notifications")})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=st.sampled_from(ALL_VERSIONS), content=_member_content,
       join_rule=st.sampled_from(["public", "invite", "knock", "restricted", "knock_restricted"]))
def test_malformed_member_content_is_rejected_or_allowed_never_crashes(
        version: str, content: dict[str, Any], join_rule: str) -> None:
    room = standard_room(version, join_rule=join_rule)
    event = room.make(MEMBER, BOB, content, state_key=BOB)
    try:
        check_auth_rules(event, room.state)
    except AuthError:
        pass


@settings(max_examples=150, deadline=None)
@given(version=st.sampled_from(ALL_VERSIONS), content=_power_levels_content)
def test_malformed_power_levels_are_rejected_or_allowed_never_crash(version: str,
                                                                   content: dict[str, Any]) -> None:
    room = standard_room(version)
    event = room.make(POWER_LEVELS, ALICE, content, state_key="")
    try:
        check_auth_rules(event, room.state)
    except AuthError:
        return
    # Whatever was allowed can be read back, and then checked against.
    room.force(event)
    room.state[(POWER_LEVELS, "")] = event
    try:
        check_auth_rules(room.make("m.room.message", ALICE, {}), room.state)
        check_auth_rules(room.make(POWER_LEVELS, ALICE, {}, state_key=""), room.state)
    except AuthError:
        pass
