"""Shared test builders: signed events of a room of any version.

    room = TestRoom("12", creator="@alice:test")        # create, join, power levels, join rules
    bob_join = room.join("@bob:test")
    msg = room.message("@bob:test", "hello")
    fork = room.build("m.room.message", {"body": "x"}, prev_event_ids=[bob_join.event_id])
    req = room.input_request(room.events)               # an InputRoomEventsRequest for them

``TestRoom`` keeps the room's state and forward extremities as a client of
one server would see them: each event built with ``advance=True`` (the
default) becomes the only forward extremity and updates the state. Events
are real: hashed and signed with ``TEST_SIGNING_KEY`` by ``server_name``,
with auth events chosen by the spec's auth events selection.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from myelin.roomserver.v1 import events_pb2, input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as pb

from matrixlib.auth_rules import auth_types_for_event
from matrixlib.builder import build_event
from matrixlib.events import (
    CREATE,
    HISTORY_VISIBILITY,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    REDACTION,
    Event,
    StateKey,
)
from matrixlib.room_versions import RoomVersion, get_room_version
from matrixlib.signing import SigningKey

TEST_SERVER_NAME = "test"
TEST_SIGNING_KEY = SigningKey.from_seed(bytes(range(32)), "test1")

# A fixed clock so that runs are reproducible; each room starts its clock
# further on, so that two rooms built alike (v12 room IDs are the create
# event's hash) are still different rooms.
_BASE_TS = 1_700_000_000_000
_rooms_built = itertools.count()


def event_proto(event: Event) -> events_pb2.Event:
    return events_pb2.Event(event_id=event.event_id, room_version=event.room_version.identifier,
                            pdu_json=event.to_json())


def input_event(event: Event, kind: int = input_log_pb2.INPUT_KIND_NEW, *,
                state_event_ids: Sequence[str] | None = None, origin: str = "",
                transaction_id: tuple[str, str, str] | None = None) -> input_log_pb2.InputRoomEvent:
    """An ``InputRoomEvent`` for ``event``; ``state_event_ids`` sets has_state."""
    result = input_log_pb2.InputRoomEvent(kind=kind, event=event_proto(event), origin=origin)  # type: ignore[arg-type]
    if state_event_ids is not None:
        result.has_state = True
        result.state_event_ids.extend(state_event_ids)
    if transaction_id is not None:
        user_id, device_id, txn_id = transaction_id
        result.transaction_id.user_id = user_id
        result.transaction_id.device_id = device_id
        result.transaction_id.transaction_id = txn_id
    return result


class TestRoom:
    """A room built locally, event by event."""

    __test__ = False  # not a pytest test class

    def __init__(self, room_version: str = "12", *, creator: str = "@alice:test",
                 server_name: str = TEST_SERVER_NAME, signing_key: SigningKey = TEST_SIGNING_KEY,
                 join_rule: str = "public", history_visibility: str | None = None,
                 extra_power_users: Mapping[str, int] | None = None, room_id: str | None = None) -> None:
        self.version: RoomVersion = get_room_version(room_version)
        self.creator = creator
        self.server_name = server_name
        self.signing_key = signing_key
        self.events: list[Event] = []
        self.by_id: dict[str, Event] = {}
        self.state: dict[StateKey, Event] = {}
        self.latest: list[str] = []
        # The state after each event built, as this room's builder sees it.
        self.state_after: dict[str, dict[StateKey, Event]] = {}
        # Room versions 1-11 name the room freely; 12 derives it from the create event.
        self.room_id: str = "" if self.version.hydra else (room_id or f"!{secrets.token_hex(8)}:{server_name}")
        self._clock = _BASE_TS + next(_rooms_built) * 1_000_000

        create_content: dict[str, Any] = {"room_version": self.version.identifier}
        if not self.version.implicit_room_creator:
            create_content["creator"] = creator
        self.create = self.build(CREATE, create_content, sender=creator, state_key="")
        self.room_id = self.create.room_id
        self.creator_join = self.join(creator)
        users = {} if self.version.hydra else {creator: 100}
        users.update(extra_power_users or {})
        self.power_levels = self.set_state(POWER_LEVELS, {"users": users, "users_default": 0,
                                                          "events_default": 0, "state_default": 50,
                                                          "ban": 50, "kick": 50, "redact": 50,
                                                          "invite": 0}, sender=creator)
        self.join_rules = self.set_state(JOIN_RULES, {"join_rule": join_rule}, sender=creator)
        if history_visibility is not None:
            self.set_state(HISTORY_VISIBILITY, {"history_visibility": history_visibility}, sender=creator)

    # -- building ------------------------------------------------------------

    @property
    def depth(self) -> int:
        return max((self.by_id[e].depth for e in self.latest), default=0) + 1

    def auth_event_ids_for(self, event: Event, state: Mapping[StateKey, Event]) -> list[str]:
        return [state[key].event_id for key in auth_types_for_event(event) if key in state]

    def build(self, event_type: str, content: Mapping[str, Any], *, sender: str | None = None,
              state_key: str | None = None, prev_event_ids: Sequence[str] | None = None,
              auth_state: Mapping[StateKey, Event] | None = None, redacts: str | None = None,
              depth: int | None = None, advance: bool = True,
              auth_event_ids: Sequence[str] | None = None,
              unsigned: Mapping[str, Any] | None = None) -> Event:
        """A new signed event. By default its prev events are the room's
        forward extremities and its auth events come from the room's state;
        ``advance=False`` leaves the room's state and extremities alone (to
        build forks and events that should fail). With ``prev_event_ids``
        of events this builder made, the auth events come from the state
        after those events."""
        sender = sender or self.creator
        prevs = list(prev_event_ids if prev_event_ids is not None else self.latest)
        if depth is None:
            depth = max((self.by_id[p].depth for p in prevs if p in self.by_id), default=0) + 1
        if auth_state is not None:
            state: Mapping[StateKey, Event] = auth_state
        elif prev_event_ids is not None and prevs and all(p in self.state_after for p in prevs):
            # Auth events from the state after the named prev events (merged
            # naively, later prev events winning, when there are several).
            merged: dict[StateKey, Event] = {}
            for prev in prevs:
                merged.update(self.state_after[prev])
            state = merged
        else:
            state = self.state
        self._clock += 1

        def make(auth_ids: list[str]) -> Event:
            return build_event(
                self.version, room_id=self.room_id or None, type=event_type, sender=sender,
                content=content, state_key=state_key, prev_event_ids=prevs, auth_event_ids=auth_ids,
                depth=depth, origin_server_ts=self._clock, server_name=self.server_name,
                signing_key=self.signing_key, redacts=redacts, unsigned=unsigned)

        if auth_event_ids is not None:
            event = make(list(auth_event_ids))
        else:
            # The auth events selection depends on the event itself: build once
            # to learn what it needs, then for real.
            event = make(self.auth_event_ids_for(make([]), state))
        self.by_id[event.event_id] = event
        after = dict(state)
        if event.state_key is not None:
            after[event.state_tuple] = event
        self.state_after[event.event_id] = after
        if advance:
            self.add(event)
        return event

    def add(self, event: Event) -> None:
        """Makes ``event`` the room's only forward extremity and applies it to the state."""
        self.events.append(event)
        self.by_id[event.event_id] = event
        self.latest = [event.event_id]
        if event.state_key is not None:
            self.state[event.state_tuple] = event

    # -- common events -------------------------------------------------------

    def set_state(self, event_type: str, content: Mapping[str, Any], *, sender: str | None = None,
                  state_key: str = "", **kwargs: Any) -> Event:
        return self.build(event_type, content, sender=sender, state_key=state_key, **kwargs)

    def member(self, target: str, membership: str, *, sender: str | None = None, **kwargs: Any) -> Event:
        return self.build(MEMBER, {"membership": membership}, sender=sender or target, state_key=target,
                          **kwargs)

    def join(self, user_id: str, **kwargs: Any) -> Event:
        return self.member(user_id, "join", **kwargs)

    def leave(self, user_id: str, **kwargs: Any) -> Event:
        return self.member(user_id, "leave", **kwargs)

    def invite(self, sender: str, target: str, **kwargs: Any) -> Event:
        return self.member(target, "invite", sender=sender, **kwargs)

    def kick(self, sender: str, target: str, **kwargs: Any) -> Event:
        return self.member(target, "leave", sender=sender, **kwargs)

    def knock(self, user_id: str, **kwargs: Any) -> Event:
        return self.member(user_id, "knock", **kwargs)

    def ban(self, sender: str, target: str, **kwargs: Any) -> Event:
        return self.member(target, "ban", sender=sender, **kwargs)

    def message(self, sender: str, body: str, **kwargs: Any) -> Event:
        return self.build("m.room.message", {"msgtype": "m.text", "body": body}, sender=sender, **kwargs)

    def redact(self, sender: str, target_event_id: str, **kwargs: Any) -> Event:
        return self.build(REDACTION, {}, sender=sender, redacts=target_event_id, **kwargs)

    # -- input ---------------------------------------------------------------

    def input_request(self, events: Iterable[Event], kind: int = input_log_pb2.INPUT_KIND_NEW,
                      wait: bool = True) -> pb.InputRoomEventsRequest:
        return pb.InputRoomEventsRequest(events=[input_event(e, kind) for e in events], wait=wait)
