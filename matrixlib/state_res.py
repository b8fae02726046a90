"""State resolution: which state holds where branches of a room's graph merge.

Three algorithms, chosen by ``RoomVersion.state_res``:

* v1 (room version 1): https://spec.matrix.org/v1.19/rooms/v1/#state-resolution
  Conflicts between power levels, then join rules, then memberships, then
  everything else, each settled by depth and ``sha1(event_id)``.
* v2 (room versions 2 to 11): https://spec.matrix.org/v1.19/rooms/v2/#state-resolution
  The full conflicted set (conflicted state plus auth difference) is replayed:
  power events in reverse topological power order, the rest in mainline
  order, each through the iterative auth checks.
* v2.1 (room version 12, MSC4297): https://spec.matrix.org/v1.19/rooms/v12/#state-resolution
  As v2, but the full conflicted set also holds the *conflicted state
  subgraph*, and the first iterative auth checks start from an empty state;
  the unconflicted state map is laid over the result at the end only.

Everything is a pure function of the state sets and the events the caller's
lookup returns; no I/O. All graph walks are iterative (room auth DAGs can be
far deeper than Python's recursion limit), each event is fetched once per
call, and the sorts use ``heapq``/``sorted`` with total keys, so the result
does not depend on the order of the state sets or of any dict.

Where the spec leaves room, this module does what Synapse does:

* The auth chain of a *state set* includes the state set's own events
  (Synapse's auth chain difference does the same), so an event every state
  set holds is never in the auth difference.
* ``m.room.create`` counts as a power event (Synapse and Ruma both do; it
  has no auth events, so this only moves it to the front).
* v1: when every conflicting non-auth event fails the auth checks, the one
  with the lowest depth is kept.
* Events the lookup cannot find are left out of the full conflicted set, and
  missing auth events are skipped.

One reading is the spec's literal one where Synapse and Ruma approximate it:
step 1 adds *every* event of a power event's auth chain that is in the full
conflicted set, also when the auth path to it passes through events outside
that set, and the topological sort honours those indirect auth paths.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from matrixlib.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from matrixlib.events import (
    CREATE,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    Event,
    EventFormatError,
    StateKey,
)
from matrixlib.power_levels import PowerLevels
from matrixlib.room_versions import RoomVersion, StateResolution

__all__ = [
    "EventLookup",
    "auth_chain",
    "auth_chain_difference",
    "conflicted_state_subgraph",
    "resolve_state",
]

EventLookup = Callable[[str], Event | None]
"""Finds an event by ID; must find every event in the state sets and their auth chains."""

RejectedLookup = Callable[[str], bool]
"""True for an event that was rejected for failing auth against its own auth events."""

_CREATE_KEY: StateKey = (CREATE, "")
_POWER_LEVELS_KEY: StateKey = (POWER_LEVELS, "")
_JOIN_RULES_KEY: StateKey = (JOIN_RULES, "")

_NO_STATE: frozenset[str] = frozenset()


def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    get_event: EventLookup,
    auth_chain_difference: set[str] | None = None,
    *,
    is_rejected: RejectedLookup | None = None,
) -> dict[StateKey, str]:
    """Resolves ``state_sets`` (each ``(type, state_key) -> event_id``) to one state.

    ``auth_chain_difference`` may carry the auth difference of the state sets
    when the caller has an index that computes it cheaply (it must count each
    state set's own events as part of its auth chain, as
    :func:`auth_chain_difference` does); it is ignored by v1. ``is_rejected``
    names events rejected against their own auth events: they are never used
    as auth events, nor admitted to the state, by the iterative auth checks
    of v2 and v2.1 (v1 has none and ignores it). Events rejected only for
    failing auth against the state before them must not be named: the spec
    has those replayed like any other event.
    """
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    graph = _AuthGraph(get_event, is_rejected)
    if room_version.state_res is StateResolution.V1:
        return _resolve_v1(graph, state_sets)
    return _resolve_v2(
        graph,
        state_sets,
        precomputed_difference=auth_chain_difference,
        v2_1=room_version.state_res is StateResolution.V2_1,
    )


def auth_chain(event_ids: Iterable[str], get_event: EventLookup) -> set[str]:
    """The union of the auth chains of ``event_ids``.

    Each event's own ID is in the result only if another event's auth chain
    reaches it. Auth events the lookup cannot find are in the result but
    their own auth events are not.
    """
    return _AuthGraph(get_event, None).ancestors(event_ids)


def auth_chain_difference(
    state_sets: Sequence[Mapping[StateKey, str]], get_event: EventLookup
) -> set[str]:
    """The events in some but not all of the state sets' full auth chains.

    A state set's full auth chain is its events plus their auth chains, as
    Synapse computes it: see the module docstring.
    """
    return _AuthGraph(get_event, None).auth_difference(state_sets)


def conflicted_state_subgraph(conflicted_event_ids: Collection[str], get_event: EventLookup) -> set[str]:
    """The events on auth paths between two conflicted state events, ends included (v2.1)."""
    return _AuthGraph(get_event, None).conflicted_subgraph(set(conflicted_event_ids))


# -- v2 and v2.1 --------------------------------------------------------------


def _resolve_v2(
    graph: _AuthGraph,
    state_sets: Sequence[Mapping[StateKey, str]],
    *,
    precomputed_difference: set[str] | None,
    v2_1: bool,
) -> dict[StateKey, str]:
    unconflicted, conflicted = _separate_v2(state_sets)
    if not conflicted:
        return unconflicted
    conflicted_ids: set[str] = set().union(*conflicted.values())
    if precomputed_difference is None:
        full_conflicted = conflicted_ids | graph.auth_difference(state_sets)
    else:
        full_conflicted = conflicted_ids | precomputed_difference
    if v2_1:
        full_conflicted |= graph.conflicted_subgraph(conflicted_ids)
    # An event nobody can show us cannot be checked, so it cannot be state.
    full_conflicted = {eid for eid in full_conflicted if graph.get(eid) is not None}

    # Step 1: power events and what of their auth chains is conflicted.
    power_events = {eid for eid in full_conflicted if _is_power_event(graph.event(eid))}
    power_order = graph.reverse_topological_power_order(power_events, full_conflicted)

    # Step 2: v2 starts from the unconflicted state; v2.1 from nothing, so a
    # conflicted event is checked against what the replay has established
    # and otherwise its own auth events, never against newer unconflicted
    # state (an admin's later leave voiding her earlier power levels).
    state: dict[StateKey, str] = {} if v2_1 else dict(unconflicted)
    graph.iterative_auth_checks(power_order, state)

    # Steps 3 and 4: everything else, by the mainline of the resolved power levels.
    in_power_order = set(power_order)
    others = [eid for eid in full_conflicted if eid not in in_power_order]
    graph.iterative_auth_checks(graph.mainline_order(others, state.get(_POWER_LEVELS_KEY)), state)

    # Step 5.
    state.update(unconflicted)
    return state


def _separate_v2(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """A key is unconflicted only if every state set maps it to the same event."""
    keys: set[StateKey] = set().union(*(s.keys() for s in state_sets))
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for key in keys:
        values = {s.get(key) for s in state_sets}
        if len(values) == 1:
            (only,) = values
            if only is not None:
                unconflicted[key] = only
        else:
            conflicted[key] = {v for v in values if v is not None}
    return unconflicted, conflicted


def _is_power_event(event: Event) -> bool:
    """Power levels, join rules, create, and kicks and bans (not self-leaves)."""
    if event.state_key == "" and event.type in (POWER_LEVELS, JOIN_RULES, CREATE):
        return True
    if event.type == MEMBER and event.is_state() and event.membership in ("leave", "ban"):
        return event.sender != event.state_key
    return False


# -- v1 -----------------------------------------------------------------------


def _resolve_v1(graph: _AuthGraph, state_sets: Sequence[Mapping[StateKey, str]]) -> dict[StateKey, str]:
    # v1 calls a key conflicted only where two states name different events;
    # a key some states lack is not a conflict.
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for state_set in state_sets:
        for key, event_id in state_set.items():
            if key in conflicted:
                conflicted[key].add(event_id)
            elif key not in unconflicted:
                unconflicted[key] = event_id
            elif unconflicted[key] != event_id:
                conflicted[key] = {event_id, unconflicted.pop(key)}

    conflicted_events: dict[StateKey, list[Event]] = {}
    for key, event_ids in conflicted.items():
        found = [ev for ev in map(graph.get, event_ids) if ev is not None]
        if len(found) > 1:
            conflicted_events[key] = found
        elif found:
            unconflicted[key] = found[0].event_id

    # R, the resolution so far. Within one pass every key is resolved
    # against R as it stood when the pass began.
    resolved: dict[StateKey, str] = dict(unconflicted)
    passes: list[list[StateKey]] = [
        [k for k in conflicted_events if k == _POWER_LEVELS_KEY],
        [k for k in conflicted_events if k[0] == JOIN_RULES],
        [k for k in conflicted_events if k[0] == MEMBER],
    ]
    done: set[StateKey] = set()
    for keys in passes:
        snapshot = dict(resolved)
        for key in keys:
            resolved[key] = graph.v1_resolve_auth_events(conflicted_events[key], snapshot)
            done.add(key)
    snapshot = dict(resolved)
    for key, events in conflicted_events.items():
        if key not in done:
            resolved[key] = graph.v1_resolve_other_events(events, snapshot)
    return resolved


def _v1_order_key(event: Event) -> tuple[int, str]:
    """Highest depth first, then lowest sha1(event_id)."""
    return -event.depth, hashlib.sha1(event.event_id.encode("utf-8")).hexdigest()


# -- the auth graph -------------------------------------------------------------


class _AuthGraph:
    """Events of one resolution, fetched once, and the walks over their auth events."""

    def __init__(self, get_event: EventLookup, is_rejected: RejectedLookup | None) -> None:
        self._get_event = get_event
        self._is_rejected = is_rejected
        self._events: dict[str, Event | None] = {}
        self._create_by_room: dict[str, Event | None] = {}
        self._sender_power: dict[str, float] = {}

    # -- lookups --

    def get(self, event_id: str) -> Event | None:
        try:
            return self._events[event_id]
        except KeyError:
            event = self._get_event(event_id)
            self._events[event_id] = event
            return event

    def event(self, event_id: str) -> Event:
        event = self.get(event_id)
        if event is None:
            raise KeyError(event_id)
        return event

    def auth_ids(self, event_id: str) -> list[str]:
        event = self.get(event_id)
        return event.auth_event_ids if event is not None else []

    def rejected(self, event_id: str) -> bool:
        return self._is_rejected is not None and self._is_rejected(event_id)

    def power_levels_in_auth(self, event: Event) -> str | None:
        """The first ``m.room.power_levels`` event among ``event``'s auth events."""
        for auth_id in event.auth_event_ids:
            auth_event = self.get(auth_id)
            if auth_event is not None and auth_event.type == POWER_LEVELS and auth_event.state_key == "":
                return auth_id
        return None

    def create_event_for(self, event: Event) -> Event | None:
        """The room's create event: cited in auth events, or (v12) named by the room ID."""
        if event.type == CREATE and event.state_key == "":
            return event
        if event.room_version.hydra:
            room_id = event.room_id
            if room_id not in self._create_by_room:
                self._create_by_room[room_id] = self.get("$" + room_id[1:])
            return self._create_by_room[room_id]
        for auth_id in event.auth_event_ids:
            auth_event = self.get(auth_id)
            if auth_event is not None and auth_event.type == CREATE and auth_event.state_key == "":
                return auth_event
        return None

    # -- walks --

    def ancestors(self, event_ids: Iterable[str], stop: Collection[str] = _NO_STATE) -> set[str]:
        """Every event reachable through auth events, not passing into ``stop``."""
        seen: set[str] = set()
        stack = [a for eid in event_ids for a in self.auth_ids(eid)]
        while stack:
            eid = stack.pop()
            if eid in seen or eid in stop:
                continue
            seen.add(eid)
            stack.extend(self.auth_ids(eid))
        return seen

    def auth_difference(self, state_sets: Sequence[Mapping[StateKey, str]]) -> set[str]:
        """The union of the Cs minus their intersection, where C is a state set's
        events plus their auth chains."""
        id_sets = [set(s.values()) for s in state_sets]
        if len(id_sets) < 2:
            return set()
        # What every state set holds, and its auth chain, is in every C; so
        # each C is that common part plus a (usually small) rest, and only
        # the rests need comparing. Walking the common part once instead of
        # once per state set is what keeps this linear in the room's history.
        common = set.intersection(*id_sets)
        common_chain = common | self.ancestors(common)
        rests = [
            (ids - common_chain) | self.ancestors(ids - common, stop=common_chain) for ids in id_sets
        ]
        everywhere = rests[0].intersection(*rests[1:])
        return set().union(*rests) - everywhere

    def conflicted_subgraph(self, conflicted: set[str]) -> set[str]:
        """Events on auth paths from one conflicted event to another, ends included."""
        # Walk down from the conflicted events, remembering who cites whom ...
        cited_by: dict[str, list[str]] = {}
        seen = set(conflicted)
        stack = list(conflicted)
        while stack:
            eid = stack.pop()
            for auth_id in self.auth_ids(eid):
                cited_by.setdefault(auth_id, []).append(eid)
                if auth_id not in seen:
                    seen.add(auth_id)
                    stack.append(auth_id)
        # ... then back up from them: what is both below a conflicted event and
        # above one lies on a path between two.
        on_path = set(conflicted)
        stack = list(conflicted)
        while stack:
            eid = stack.pop()
            for citing in cited_by.get(eid, ()):
                if citing not in on_path:
                    on_path.add(citing)
                    stack.append(citing)
        return on_path

    # -- orderings --

    def sender_power(self, event: Event) -> float:
        """The sender's power level by the power levels event in ``event``'s auth events."""
        cached = self._sender_power.get(event.event_id)
        if cached is not None:
            return cached
        power = self._compute_sender_power(event)
        self._sender_power[event.event_id] = power
        return power

    def _compute_sender_power(self, event: Event) -> float:
        power_levels_id = self.power_levels_in_auth(event)
        power_levels = self.event(power_levels_id) if power_levels_id is not None else None
        levels = PowerLevels.from_state(
            power_levels, event.room_version, create_event=self.create_event_for(event))
        return levels.user_level(event.sender)

    def reverse_topological_power_order(self, power_events: set[str], full_conflicted: set[str]) -> list[str]:
        """Step 1: the power events and their auth chains' share of the full
        conflicted set, in Kahn's order with the smallest (highest sender
        power, earliest, lowest ID) ready event first."""
        # X: the power events plus every event of their auth chains that is
        # in the full conflicted set.
        selected = set(power_events)
        for eid in self.ancestors(power_events):
            if eid in full_conflicted:
                selected.add(eid)
        auth_edges = self._edges_within(selected)

        cited_by: dict[str, list[str]] = {eid: [] for eid in selected}
        waiting_on: dict[str, int] = {}
        ready: list[tuple[float, int, str]] = []
        for eid, below in auth_edges.items():
            waiting_on[eid] = len(below)
            for auth_id in below:
                cited_by[auth_id].append(eid)
            if not below:
                heapq.heappush(ready, self._power_order_key(eid))
        order: list[str] = []
        while ready:
            _, _, eid = heapq.heappop(ready)
            order.append(eid)
            for citing in cited_by[eid]:
                waiting_on[citing] -= 1
                if waiting_on[citing] == 0:
                    heapq.heappush(ready, self._power_order_key(citing))
        if len(order) < len(selected):
            # Only forged v1-format event IDs can make an auth cycle. Keep the
            # events of the cycle, in a fixed order, rather than lose them.
            placed = set(order)
            order.extend(sorted((e for e in selected if e not in placed), key=self._power_order_key))
        return order

    def _power_order_key(self, event_id: str) -> tuple[float, int, str]:
        event = self.event(event_id)
        return -self.sender_power(event), event.origin_server_ts, event_id

    def _edges_within(self, selected: set[str]) -> dict[str, frozenset[str]]:
        """For each selected event, the selected events below it with no other
        selected event between: the auth DAG on ``selected``, keeping paths
        that pass through unselected events."""
        below: dict[str, frozenset[str]] = {}
        in_progress: set[str] = set()
        for root in selected:
            stack: list[tuple[str, bool]] = [(root, False)]
            while stack:
                eid, children_done = stack.pop()
                if eid in below:
                    continue
                if children_done:
                    in_progress.discard(eid)
                    found: set[str] = set()
                    for auth_id in self.auth_ids(eid):
                        if auth_id in selected:
                            found.add(auth_id)
                        else:
                            found |= below.get(auth_id, _NO_STATE)
                    below[eid] = frozenset(found) if found else _NO_STATE
                    continue
                if eid in in_progress:
                    continue  # an auth cycle; see reverse_topological_power_order
                in_progress.add(eid)
                stack.append((eid, True))
                for auth_id in self.auth_ids(eid):
                    if auth_id not in selected and auth_id not in below:
                        stack.append((auth_id, False))
        return {eid: below[eid] for eid in selected}

    def mainline_order(self, event_ids: Iterable[str], power_levels_id: str | None) -> list[str]:
        """Step 3: by mainline position (earliest power levels first), then
        origin_server_ts, then event ID."""
        mainline: dict[str, int] = {}
        current = power_levels_id
        while current is not None and current not in mainline:
            mainline[current] = len(mainline)
            event = self.get(current)
            current = self.power_levels_in_auth(event) if event is not None else None

        # Mainline positions of power levels events off the mainline, shared
        # by every event whose power levels chain passes through them.
        positions: dict[str, float] = {}

        def position(event: Event) -> float:
            path: list[str] = []
            on_path: set[str] = set()
            current = self.power_levels_in_auth(event)
            result: float = math.inf
            while current is not None:
                if current in mainline:
                    result = mainline[current]
                    break
                if current in positions:
                    result = positions[current]
                    break
                if current in on_path:
                    break
                path.append(current)
                on_path.add(current)
                pl_event = self.get(current)
                current = self.power_levels_in_auth(pl_event) if pl_event is not None else None
            for eid in path:
                positions[eid] = result
            return result

        keyed = []
        for eid in event_ids:
            event = self.event(eid)
            keyed.append((-position(event), event.origin_server_ts, eid))
        keyed.sort()
        return [eid for _, _, eid in keyed]

    # -- auth --

    def iterative_auth_checks(self, event_ids: Iterable[str], state: dict[StateKey, str]) -> None:
        """Applies to ``state``, in order, each event the auth rules allow there.

        A key the auth rules need that ``state`` lacks comes from the event's
        own auth events; rejected events are used for neither.
        """
        for eid in event_ids:
            event = self.get(eid)
            if event is None or not event.is_state() or self.rejected(eid):
                continue
            auth_state: dict[StateKey, Event] = {}
            for auth_id in event.auth_event_ids:
                auth_event = self.get(auth_id)
                if auth_event is not None and auth_event.is_state() and not self.rejected(auth_id):
                    auth_state[auth_event.state_tuple] = auth_event
            if event.room_version.hydra:
                # v12 events do not cite the create event; the room ID names it.
                create = self.create_event_for(event)
                if create is not None and create is not event:
                    auth_state[_CREATE_KEY] = create
            for key in auth_types_for_event(event):
                state_id = state.get(key)
                if state_id is None or self.rejected(state_id):
                    continue
                state_event = self.get(state_id)
                if state_event is not None:
                    auth_state[key] = state_event
            if self._allowed(event, auth_state):
                state[event.state_tuple] = eid

    def _allowed(self, event: Event, auth_state: Mapping[StateKey, Event]) -> bool:
        try:
            check_auth_rules(event, auth_state)
        except (AuthError, EventFormatError):
            return False
        return True

    def _auth_state_from(self, event: Event, state: Mapping[StateKey, str]) -> dict[StateKey, Event]:
        auth_state: dict[StateKey, Event] = {}
        for key in auth_types_for_event(event):
            state_id = state.get(key)
            if state_id is None:
                continue
            state_event = self.get(state_id)
            if state_event is not None:
                auth_state[key] = state_event
        if event.room_version.hydra and _CREATE_KEY not in auth_state:
            create = self.create_event_for(event)
            if create is not None and create is not event:
                auth_state[_CREATE_KEY] = create
        return auth_state

    def v1_resolve_auth_events(self, events: list[Event], resolved: Mapping[StateKey, str]) -> str:
        """Lowest depth (then highest sha1) first; keep each next event while it
        is allowed by R with its predecessor applied."""
        ordered = sorted(events, key=_v1_order_key, reverse=True)
        state = dict(resolved)
        kept = ordered[0]
        for event in ordered[1:]:
            state[kept.state_tuple] = kept.event_id
            if not self._allowed(event, self._auth_state_from(event, state)):
                break
            kept = event
        return kept.event_id

    def v1_resolve_other_events(self, events: list[Event], resolved: Mapping[StateKey, str]) -> str:
        """The highest depth (then lowest sha1) event that R allows."""
        ordered = sorted(events, key=_v1_order_key)
        for event in ordered:
            if self._allowed(event, self._auth_state_from(event, resolved)):
                return event.event_id
        return ordered[-1].event_id
