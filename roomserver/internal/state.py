"""State computations on numeric state maps: the state after a set of
events (resolved when they differ), and the auth state an event is checked
against.

State resolution itself is ``matrixlib.state_res``; this module feeds it.
Its ``get_event`` is synchronous, so the events it may ask for are loaded
first: the events of every state set and the auth chains of the conflicted
events, of the auth difference and of the power events (the mainline walks
back through power levels events' auth events). The auth difference is
computed from the auth-chain index in the database, as NIDs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matrixlib.auth_rules import auth_types_for_event
from matrixlib.events import CREATE, JOIN_RULES, MEMBER, POWER_LEVELS, Event, StateKey
from matrixlib.room_versions import RoomVersion
from matrixlib.state_res import resolve_state
from roomserver.storage.database import EventRecord, RoomserverDatabase, StateMap, Txn

_POWER_TYPES = (CREATE, POWER_LEVELS, JOIN_RULES)


class StateComputer:
    def __init__(self, db: RoomserverDatabase) -> None:
        self._db = db

    async def state_after_events(self, txn: Txn, room_version: RoomVersion,
                                 records: Sequence[EventRecord]) -> StateMap:
        """The state after ``records`` (which must have state): theirs when
        they agree, else resolved."""
        snapshot_nids = list(dict.fromkeys(r.state_after_nid for r in records))
        maps = [await self._db.load_state(txn, nid) for nid in snapshot_nids if nid is not None]
        return await self.resolve(txn, room_version, maps)

    async def resolve(self, txn: Txn, room_version: RoomVersion, maps: Sequence[StateMap]) -> StateMap:
        distinct: list[StateMap] = []
        for state in maps:
            if not any(state is seen or state == seen for seen in distinct):
                distinct.append(state)
        if not distinct:
            return {}
        if len(distinct) == 1:
            return dict(distinct[0])

        all_keys = set().union(*(state.keys() for state in distinct))
        conflicted_keys = {k for k in all_keys if len({state.get(k) for state in distinct}) > 1}
        conflicted = {state[k] for state in distinct for k in conflicted_keys if k in state}
        names = await self._db.state_keys_of(txn, dict.fromkeys(all_keys, 0))

        # Each state set's own events count as part of its auth chain (as the
        # state resolution algorithm's auth difference expects).
        chains = [await self._db.auth_chain_nids(txn, set(state.values())) | set(state.values())
                  for state in distinct]
        difference = set[int]().union(*chains) - set[int].intersection(*chains)

        power_nids = {nid for state in distinct for key, nid in state.items() if names[key][0] in _POWER_TYPES}
        wanted = set().union(*(set(state.values()) for state in distinct))
        wanted |= difference
        wanted |= await self._db.auth_chain_nids(txn, conflicted | difference | power_nids)
        loaded = await self._db.events_by_nid(txn, wanted)
        by_id = {event.event_id: event for event in loaded.values()}
        nid_by_id = {event.event_id: nid for nid, event in loaded.items()}

        state_sets: list[dict[StateKey, str]] = [
            {names[key]: loaded[nid].event_id for key, nid in state.items() if nid in loaded}
            for state in distinct
        ]
        difference_ids = {loaded[nid].event_id for nid in difference if nid in loaded}
        records = await self._db.event_records_by_nid(txn, loaded.keys())
        rejected = {loaded[nid].event_id for nid, record in records.items() if record.is_rejected}
        resolved = resolve_state(room_version, state_sets, by_id.get, difference_ids,
                                 is_rejected=rejected.__contains__)

        key_by_name = {name: key for key, name in names.items()}
        result: StateMap = {}
        for name, event_id in resolved.items():
            key = key_by_name.get(name)
            nid = nid_by_id.get(event_id)
            if key is not None and nid is not None:
                result[key] = nid
        return result

    async def auth_state(self, txn: Txn, event: Event, state: Mapping[tuple[int, int], int],
                         create_event: Event | None) -> dict[StateKey, Event]:
        """The part of ``state`` the auth rules look at for ``event``, always
        with the create event (found through the room in room version 12)."""
        wanted: list[StateKey] = [(CREATE, ""), *auth_types_for_event(event)]
        if event.type == MEMBER and event.state_key is not None:
            wanted.append((MEMBER, event.state_key))
        nids_by_tuple = await self._db.state_tuple_nids(txn, wanted)
        event_nids = {name: state[key] for name, key in nids_by_tuple.items() if key in state}
        loaded = await self._db.events_by_nid(txn, set(event_nids.values()))
        result = {name: loaded[nid] for name, nid in event_nids.items() if nid in loaded}
        if (CREATE, "") not in result and create_event is not None:
            result[(CREATE, "")] = create_event
        return result

    async def to_event_ids(self, txn: Txn, state: Mapping[tuple[int, int], int]) -> dict[StateKey, str]:
        names = await self._db.state_keys_of(txn, state)
        records = await self._db.event_records_by_nid(txn, set(state.values()))
        return {names[key]: records[nid].event_id for key, nid in state.items() if nid in records}
