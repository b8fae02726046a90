"""A room DAG simulator for the state resolution tests.

``Dag`` holds events with chosen IDs (``$NAME``). Each event's ``depth``
follows its prev events, its ``origin_server_ts`` rises by one per event
unless given, and its ``auth_events`` are the auth events selection over the
state before it. That state is the resolution (by the room version's
algorithm, through ``resolve_state``) of the states after its prev events,
so every fork and merge a test draws goes through state resolution as a
server would run it. Events are checked against their auth events when
added, so a fixture cannot describe an event no server would accept.
"""

from __future__ import annotations

from typing import Any

from matrixlib.auth_rules import (
    auth_state_from_auth_events,
    auth_types_for_event,
    check_auth_rules,
)
from matrixlib.events import CREATE, JOIN_RULES, MEMBER, POWER_LEVELS, TOPIC, Event, StateKey
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion
from matrixlib.state_res import resolve_state

ALICE = "@alice:a.test"  # the creator
BOB = "@bob:b.test"
CHARLIE = "@charlie:c.test"
ZARA = "@zara:z.test"
EVELYN = "@evelyn:e.test"

BASE_TS = 1_700_000_000_000

# The versions the v2/v2.1 scenarios run in: first v2 room, the last with
# stringy power levels, the last before v12, and v12 (v2.1).
V2_VERSIONS = ["2", "9", "11"]
V2_1_VERSIONS = ["12"]
V2_AND_V2_1 = V2_VERSIONS + V2_1_VERSIONS


def domain(user_id: str) -> str:
    return user_id.split(":", 1)[1]


def key(event_type: str, state_key: str = "") -> StateKey:
    return (event_type, state_key)


class Dag:
    """The events of one room and the state after each of them."""

    def __init__(self, version: str, *, creator: str = ALICE) -> None:
        self.version = version
        self.room_version: RoomVersion = KNOWN_ROOM_VERSIONS[version]
        self.events: dict[str, Event] = {}
        self._state_after: dict[str, dict[StateKey, str]] = {}
        self._ts = BASE_TS
        self.room_id = "!CREATE" if self.room_version.hydra else f"!room:{domain(creator)}"
        content: dict[str, Any] = {"room_version": version}
        if not self.room_version.implicit_room_creator:
            content["creator"] = creator
        self.add("CREATE", CREATE, creator, content, state_key="", prev=[])

    # -- building -------------------------------------------------------------

    def get(self, event_id: str) -> Event | None:
        return self.events.get(event_id)

    def _ref(self, event_id: str) -> Any:
        if self.room_version.event_format is EventFormat.V1:
            return [event_id, {"sha256": "aGFzaA"}]
        return event_id

    def state_before(self, prev: list[str]) -> dict[StateKey, str]:
        return resolve_state(self.room_version, [self._state_after[p] for p in prev], self.get)

    def add(self, name: str, event_type: str, sender: str, content: dict[str, Any], *,
            state_key: str | None = None, prev: list[str], ts: int | None = None,
            auth: list[str] | None = None) -> str:
        """Adds ``$name`` on top of ``prev`` (names without the ``$``)."""
        event_id = "$" + name
        prev_ids = ["$" + p for p in prev]
        assert event_id not in self.events, f"{event_id} added twice"
        before = self.state_before(prev_ids) if prev_ids else {}
        if ts is None:
            self._ts += 1
            ts = self._ts
        pdu: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "depth": 1 + max((self.events[p].depth for p in prev_ids), default=0),
            "origin_server_ts": ts,
            "prev_events": [self._ref(p) for p in prev_ids],
            "auth_events": [],
            "hashes": {"sha256": "aGFzaA"},
            "signatures": {domain(sender): {"ed25519:1": "c2ln"}},
        }
        if not (self.room_version.hydra and event_type == CREATE):
            pdu["room_id"] = self.room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        draft = Event(pdu, self.room_version, event_id=event_id)
        if auth is None:
            auth_ids = [before[k] for k in auth_types_for_event(draft) if k in before]
        else:
            auth_ids = ["$" + a for a in auth]
        pdu["auth_events"] = [self._ref(a) for a in auth_ids]
        event = Event(pdu, self.room_version, event_id=event_id)
        if event.type != CREATE:
            create = self.events["$CREATE"] if self.room_version.hydra else None
            check_auth_rules(event, auth_state_from_auth_events(
                [self.events[a] for a in auth_ids], create))
        self.events[event_id] = event
        after = dict(before)
        if state_key is not None:
            after[(event_type, state_key)] = event_id
        self._state_after[event_id] = after
        return name

    def member(self, name: str, sender: str, target: str, membership: str, *,
               prev: list[str], ts: int | None = None) -> str:
        return self.add(name, MEMBER, sender, {"membership": membership}, state_key=target,
                        prev=prev, ts=ts)

    def power_levels(self, name: str, sender: str, users: dict[str, int], *, prev: list[str],
                     ts: int | None = None, **levels: Any) -> str:
        """A power levels event; in v12 the creator is left out of ``users``."""
        if self.room_version.hydra:
            users = {u: level for u, level in users.items() if u != ALICE}
        return self.add(name, POWER_LEVELS, sender, {"users": users, **levels}, state_key="",
                        prev=prev, ts=ts)

    def topic(self, name: str, sender: str, *, prev: list[str], ts: int | None = None) -> str:
        return self.add(name, TOPIC, sender, {"topic": name}, state_key="", prev=prev, ts=ts)

    def message(self, name: str, sender: str, *, prev: list[str]) -> str:
        return self.add(name, "m.room.message", sender, {"body": name}, prev=prev)

    # -- reading --------------------------------------------------------------

    def state_after(self, name: str) -> dict[StateKey, str]:
        return dict(self._state_after["$" + name])

    def resolve(self, *names: str) -> dict[StateKey, str]:
        """The state where events ``names`` merge: the state before an event
        with them as prev events."""
        return self.state_before(["$" + n for n in names])

    def state_sets(self, *names: str) -> list[dict[StateKey, str]]:
        return [self.state_after(n) for n in names]


def initial_room(version: str) -> Dag:
    """Create; Alice joins and takes power levels (100; v12: creator);
    public join rules; Bob, Charlie and Zara join. The last event is IMZ."""
    dag = Dag(version)
    dag.member("IMA", ALICE, ALICE, "join", prev=["CREATE"])
    dag.power_levels("IPOWER", ALICE, {ALICE: 100}, prev=["IMA"])
    dag.add("IJR", JOIN_RULES, ALICE, {"join_rule": "public"}, state_key="", prev=["IPOWER"])
    dag.member("IMB", BOB, BOB, "join", prev=["IJR"])
    dag.member("IMC", CHARLIE, CHARLIE, "join", prev=["IMB"])
    dag.member("IMZ", ZARA, ZARA, "join", prev=["IMC"])
    return dag


def names(state: dict[StateKey, str]) -> dict[StateKey, str]:
    """A state with event IDs as the fixture names them (no ``$``)."""
    return {k: v[1:] for k, v in state.items()}
