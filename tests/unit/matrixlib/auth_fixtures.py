"""A small room simulator for the auth rule tests.

``Room`` builds events as ``Event(pdu, room_version, event_id=...)`` (no
builder, no hashing: event IDs are chosen here), fills ``auth_events`` with
the auth events selection over its current state, and applies an event to
its state only after ``check_auth_events_list`` and ``check_auth_rules``
accept it, so every room a test sets up has passed the rules on the way.
"""

from __future__ import annotations

from typing import Any

from matrixlib.auth_rules import (
    auth_state_from_auth_events,
    auth_types_for_event,
    check_auth_events_list,
    check_auth_rules,
)
from matrixlib.events import (
    CREATE,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    Event,
    StateKey,
)
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion

ALL_VERSIONS = [str(n) for n in range(1, 13)]

ALICE = "@alice:a.test"     # the creator
BOB = "@bob:b.test"
CAROL = "@carol:c.test"
DAVE = "@dave:d.test"
MALLORY = "@mallory:m.test"


def versions(first: int = 1, last: int = 12) -> list[str]:
    """Room versions ``first`` to ``last``, inclusive."""
    return [str(n) for n in range(first, last + 1)]


def domain(user_id: str) -> str:
    return user_id.split(":", 1)[1]


class Room:
    """One room of one version, with its current state."""

    def __init__(self, version: str, creator: str = ALICE,
                 create_content: dict[str, Any] | None = None) -> None:
        self.room_version: RoomVersion = KNOWN_ROOM_VERSIONS[version]
        self.counter = 0
        self.state: dict[StateKey, Event] = {}
        self.events: dict[str, Event] = {}
        self.last_event_id: str | None = None
        content: dict[str, Any] = {"room_version": version}
        if not self.room_version.implicit_room_creator:
            content["creator"] = creator
        content.update(create_content or {})
        if self.room_version.hydra:
            self.room_id = "!createevent0"
        else:
            self.room_id = f"!room:{domain(creator)}"
        self.create = self.add(self.make(CREATE, creator, content, state_key="", prev=[]))

    # -- building -----------------------------------------------------------

    def next_event_id(self, sender: str, event_type: str) -> str:
        self.counter += 1
        if self.room_version.hydra and event_type == CREATE and self.counter == 1:
            return "$createevent0"
        if self.room_version.event_format is EventFormat.V1:
            return f"${self.counter}:{domain(sender)}"
        return f"$event{self.counter}"

    def _ref(self, event_id: str) -> Any:
        if self.room_version.event_format is EventFormat.V1:
            return [event_id, {"sha256": "aGFzaA"}]
        return event_id

    def make(self, event_type: str, sender: str, content: dict[str, Any],
             state_key: str | None = None, prev: list[str] | None = None,
             auth: list[str] | None = None, event_id: str | None = None,
             **extra: Any) -> Event:
        """An event on top of the room (not applied). ``auth`` defaults to
        the auth events selection over the current state."""
        pdu: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "depth": self.counter + 1,
            "origin_server_ts": 1_700_000_000_000 + self.counter,
            "hashes": {"sha256": "aGFzaA"},
            "signatures": {domain(sender): {"ed25519:1": "c2ln"}},
        }
        if not (self.room_version.hydra and event_type == CREATE):
            pdu["room_id"] = self.room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        if prev is None:
            prev = [self.last_event_id] if self.last_event_id else []
        pdu["prev_events"] = [self._ref(p) for p in prev]
        pdu["auth_events"] = []
        pdu.update(extra)
        event_id = event_id or self.next_event_id(sender, event_type)
        event = Event(pdu, self.room_version, event_id=event_id)
        if auth is None:
            auth = [self.state[key].event_id for key in auth_types_for_event(event) if key in self.state]
        event.pdu["auth_events"] = [self._ref(a) for a in auth]
        return Event(event.pdu, self.room_version, event_id=event_id)

    def member(self, sender: str, target: str, membership: str,
               signatures: dict[str, dict[str, str]] | None = None, **content: Any) -> Event:
        """An m.room.member event; ``signatures`` replaces the PDU's."""
        extra: dict[str, Any] = {"signatures": signatures} if signatures is not None else {}
        return self.make(MEMBER, sender, {"membership": membership, **content}, state_key=target, **extra)

    # -- checking and applying -----------------------------------------------

    def auth_events_of(self, event: Event) -> list[Event]:
        return [self.events[event_id] for event_id in event.auth_event_ids]

    def check(self, event: Event) -> None:
        """Both parts of the auth check, against the event's auth events and
        against the room's current state."""
        auth_events = self.auth_events_of(event)
        check_auth_events_list(event, auth_events)
        if event.type != CREATE:
            check_auth_rules(event, auth_state_from_auth_events(auth_events, self.create))
        check_auth_rules(event, self.state)

    def add(self, event: Event) -> Event:
        self.check(event)
        self.events[event.event_id] = event
        self.last_event_id = event.event_id
        if event.state_key is not None:
            self.state[(event.type, event.state_key)] = event
        return event

    def force(self, event: Event) -> Event:
        """Applies an event without checking it (to reach odd states)."""
        self.events[event.event_id] = event
        self.last_event_id = event.event_id
        if event.state_key is not None:
            self.state[(event.type, event.state_key)] = event
        return event

    def send(self, event_type: str, sender: str, content: dict[str, Any],
             state_key: str | None = None) -> Event:
        return self.add(self.make(event_type, sender, content, state_key=state_key))

    def join(self, user_id: str, **content: Any) -> Event:
        return self.add(self.member(user_id, user_id, "join", **content))

    def set_power_levels(self, content: dict[str, Any], sender: str = ALICE) -> Event:
        return self.send(POWER_LEVELS, sender, content, state_key="")

    def set_join_rule(self, join_rule: str, sender: str = ALICE, **content: Any) -> Event:
        return self.send(JOIN_RULES, sender, {"join_rule": join_rule, **content}, state_key="")


def standard_room(version: str, join_rule: str = "public",
                  users: dict[str, int] | None = None, **levels: Any) -> Room:
    """A room as a server creates it: create, the creator's join, power
    levels (the creator at 100 in v1-11; implied in v12), join rules."""
    room = Room(version)
    room.join(ALICE)
    room_users: dict[str, int] = {} if room.room_version.hydra else {ALICE: 100}
    room_users.update(users or {})
    room.set_power_levels({"users": room_users, **levels})
    room.set_join_rule(join_rule)
    return room
