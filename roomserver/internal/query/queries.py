"""The room server's queries (every read rpc of the Roomserver service).

Events are answered as stored, except that an event an accepted redaction
redacted is answered in its redacted form (the original stays in storage).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from myelin.roomserver.v1 import events_pb2
from myelin.roomserver.v1 import roomserver_pb2 as pb

from common import errors
from common.lru_cache import LRUCache
from matrixlib.events import HISTORY_VISIBILITY, MEMBER, Event, StateKey
from matrixlib.room_versions import get_room_version
from roomserver.internal.convert import event_to_proto, history_visibility_of
from roomserver.internal.state import StateComputer
from roomserver.storage.database import EventRecord, RoomRecord, RoomserverDatabase, StateMap, Txn
from roomserver.storage.tables import membership as membership_t

DEFAULT_MISSING_EVENTS_LIMIT = 10
MAX_MISSING_EVENTS_LIMIT = 100
# How many (state snapshot, state asked for) answers of
# QueryLatestEventsAndState stay in memory, and the most state events one may
# hold: what building an event asks for (its auth events, a handful) is
# kept; a room's whole state (a big room's is megabytes) is not.
STATE_ANSWER_CACHE_SIZE = 256
STATE_ANSWER_MAX_EVENTS = 16

#: (state snapshot NID, the (type, state_key) pairs asked for, in order).
_StateAnswerKey = tuple[int | None, tuple[tuple[str, str], ...]]


def _server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def _state_answer_key(room: RoomRecord, req: pb.QueryLatestEventsAndStateRequest) -> _StateAnswerKey:
    return room.state_snapshot_nid, tuple((w.event_type, w.state_key) for w in req.state_to_fetch)


class Queries:
    def __init__(self, db: RoomserverDatabase) -> None:
        self._db = db
        self._state = StateComputer(db)
        # QueryLatestEventsAndState's state events, with the redaction
        # generation they were read at (see ``_latest_from_memory``).
        self._state_answers: LRUCache[_StateAnswerKey, tuple[int, list[events_pb2.Event]]] = \
            LRUCache(STATE_ANSWER_CACHE_SIZE)

    # -- helpers ---------------------------------------------------------------

    async def _protos(self, txn: Txn, records: Sequence[EventRecord]) -> list[events_pb2.Event]:
        loaded = await self._db.events_by_nid(txn, [r.event_nid for r in records])
        return [event_to_proto(loaded[r.event_nid], redacted=r.redacted_by is not None)
                for r in records if r.event_nid in loaded]

    async def _filter_state(self, txn: Txn, state: StateMap,
                            wanted: Iterable[events_pb2.StateKeyTuple]) -> StateMap:
        tuples = [(w.event_type, w.state_key) for w in wanted]
        if not tuples:
            return state
        # A state key of "*" asks for every state key of the type (as Dendrite does).
        wildcard_types = {t for t, s in tuples if s == "*"}
        keys = await self._db.state_tuple_nids(txn, [(t, s) for t, s in tuples if s != "*"])
        # By the keys asked for, not the state's: a big room's state is its members.
        result = {k: state[k] for k in keys.values() if k in state}
        if wildcard_types:
            type_nids = set((await self._db.type_nids(txn, wildcard_types, create=False)).values())
            result.update({k: v for k, v in state.items() if k[0] in type_nids})
        return result

    async def _state_protos(self, txn: Txn, state: StateMap) -> list[events_pb2.Event]:
        records = await self._db.event_records_by_nid(txn, set(state.values()))
        ordered = sorted(records.values(), key=lambda r: r.event_nid)
        return await self._protos(txn, ordered)

    async def _room(self, txn: Txn, room_id: str) -> RoomRecord | None:
        return await self._db.room_by_id(txn, room_id)

    # -- state -----------------------------------------------------------------

    async def query_latest_events_and_state(
            self, req: pb.QueryLatestEventsAndStateRequest) -> pb.QueryLatestEventsAndStateResponse:
        # Every sent event asks this first: answered from memory when the
        # room server is its database's only writer and has it all there.
        known = self._latest_from_memory(req)
        if known is not None:
            if req.joined_server_name:
                cached_room = self._db.cached_room(req.room_id)
                if cached_room is not None:
                    known.server_joined = await self._db.server_joined(cached_room, req.joined_server_name)
            return known
        redactions = self._db.redaction_generation
        async with self._db.reading() as txn:
            room = await self._room(txn, req.room_id)
            if room is None:
                return pb.QueryLatestEventsAndStateResponse(room_exists=False)
            server_joined = bool(req.joined_server_name) and await self._db.server_joined(
                room, req.joined_server_name, txn)
            state = await self._db.load_state(txn, room.state_snapshot_nid)
            state = await self._filter_state(txn, state, req.state_to_fetch)
            # The extremities' rows and the state events' rows in one statement
            # (this query runs once per sent event).
            records = await self._db.event_records_by_nid(
                txn, {*room.forward_extremities, *state.values()})
            extremities = [records[n] for n in room.forward_extremities if n in records]
            state_records = sorted((records[n] for n in set(state.values()) if n in records),
                                   key=lambda r: r.event_nid)
            state_events = await self._protos(txn, state_records)
        if self._db.sole_writer and self._db.redaction_generation == redactions \
                and len(state_events) <= STATE_ANSWER_MAX_EVENTS:
            # A snapshot's events never change but by a redaction, which moves
            # the generation (this process makes every write: sole writer).
            self._state_answers.put(_state_answer_key(room, req), (redactions, state_events))
        return pb.QueryLatestEventsAndStateResponse(
            room_exists=True, room_version=room.room_version,
            latest_event_ids=[r.event_id for r in extremities],
            state_events=state_events,
            depth=max((r.depth for r in extremities), default=0) + 1,
            server_joined=server_joined,
        )

    def _latest_from_memory(
            self, req: pb.QueryLatestEventsAndStateRequest) -> pb.QueryLatestEventsAndStateResponse | None:
        """The answer without reading the database: the room's row as last
        committed (``cached_room``, kept only by a sole writer), its forward
        extremities' IDs and depths (which never change), and the state
        events an earlier answer for the same snapshot read, unless an event
        was redacted since. None when something is not in memory."""
        room = self._db.cached_room(req.room_id)
        if room is None:
            return None
        cached = self._state_answers.get(_state_answer_key(room, req))
        if cached is None or cached[0] != self._db.redaction_generation:
            return None
        heads = [self._db.cached_event_head(nid) for nid in room.forward_extremities]
        latest = [head for head in heads if head is not None]
        if len(latest) != len(heads):
            return None
        return pb.QueryLatestEventsAndStateResponse(
            room_exists=True, room_version=room.room_version,
            latest_event_ids=[event_id for event_id, _ in latest],
            state_events=cached[1],
            depth=max((depth for _, depth in latest), default=0) + 1,
        )

    async def query_state_after_events(
            self, req: pb.QueryStateAfterEventsRequest) -> pb.QueryStateAfterEventsResponse:
        async with self._db.reading() as txn:
            room = await self._room(txn, req.room_id)
            if room is None:
                return pb.QueryStateAfterEventsResponse(room_exists=False)
            records = await self._db.event_records_by_id(txn, list(req.prev_event_ids))
            ordered = [records.get(e) for e in req.prev_event_ids]
            if not ordered or any(r is None or r.state_after_nid is None or r.room_nid != room.room_nid
                                  for r in ordered):
                return pb.QueryStateAfterEventsResponse(room_exists=True, prev_events_exist=False,
                                                        room_version=room.room_version)
            state = await self._state.state_after_events(
                txn, get_room_version(room.room_version), [r for r in ordered if r is not None])
            state = await self._filter_state(txn, state, req.state_to_fetch)
            return pb.QueryStateAfterEventsResponse(
                room_exists=True, prev_events_exist=True, room_version=room.room_version,
                state_events=await self._state_protos(txn, state))

    async def query_events_by_id(self, req: pb.QueryEventsByIDRequest) -> pb.QueryEventsByIDResponse:
        async with self._db.reading() as txn:
            records = await self._db.event_records_by_id(txn, list(req.event_ids))
            wanted = [records[e] for e in dict.fromkeys(req.event_ids) if e in records]
            if not req.include_unaccepted:
                wanted = [r for r in wanted if r.is_accepted]
            return pb.QueryEventsByIDResponse(events=await self._protos(txn, wanted))

    async def query_room_info(self, req: pb.QueryRoomInfoRequest) -> pb.QueryRoomInfoResponse:
        async with self._db.reading() as txn:
            room = await self._room(txn, req.room_id)
            if room is None:
                return pb.QueryRoomInfoResponse(room_exists=False)
            create_id = ""
            if room.create_event_nid is not None:
                found = await self._db.event_records_by_nid(txn, [room.create_event_nid])
                create_id = found[room.create_event_nid].event_id
            extremities = await self._db.event_records_by_nid(txn, room.forward_extremities)
            joined_servers: list[str] = []
            if req.include_joined_servers:
                rows = await self._db.memberships_in_room(txn, room.room_nid, joined_only=True)
                servers = dict.fromkeys(row.target_user_id.partition(":")[2] for row in rows)
                joined_servers = [server for server in servers if server]
            server_joined = bool(req.joined_server_name) and await membership_t.select_server_joined(
                txn.conn, room.room_nid, req.joined_server_name)
            return pb.QueryRoomInfoResponse(
                room_exists=True, room_version=room.room_version, create_event_id=create_id,
                joined_member_count=await self._db.joined_member_count(txn, room.room_nid),
                latest_event_ids=[r.event_id for r in extremities.values()],
                is_stub=room.state_snapshot_nid is None, joined_servers=joined_servers,
                server_joined=server_joined)

    # -- memberships ---------------------------------------------------------

    async def query_membership_for_user(
            self, req: pb.QueryMembershipForUserRequest) -> pb.QueryMembershipForUserResponse:
        async with self._db.reading() as txn:
            room = await self._room(txn, req.room_id)
            if room is None:
                return pb.QueryMembershipForUserResponse(room_exists=False)
            server_joined = bool(req.joined_server_name) and await self._db.server_joined(
                room, req.joined_server_name, txn)
            row = await self._db.membership_of(txn, room.room_nid, req.user_id)
            if row is None:
                return pb.QueryMembershipForUserResponse(room_exists=True, server_joined=server_joined)
            event_id = (await self._db.event_records_by_nid(txn, [row.event_nid]))[row.event_nid].event_id
            return pb.QueryMembershipForUserResponse(
                room_exists=True, has_been_in_room=True, membership=row.membership, event_id=event_id,
                is_in_room=row.membership == "join", server_joined=server_joined)

    async def query_memberships_for_room(
            self, req: pb.QueryMembershipsForRoomRequest) -> pb.QueryMembershipsForRoomResponse:
        async with self._db.reading() as txn:
            room = await self._room(txn, req.room_id)
            if room is None:
                return pb.QueryMembershipsForRoomResponse(room_exists=False)
            if req.at_event_id:
                record = (await self._db.event_records_by_id(txn, [req.at_event_id])).get(req.at_event_id)
                if record is None or record.room_nid != room.room_nid or record.state_before_nid is None:
                    raise errors.NotFound(f"unknown event {req.at_event_id} in {req.room_id}")
                state = await self._db.load_state(txn, record.state_before_nid)
                members = await self._filter_state(txn, state, [events_pb2.StateKeyTuple(
                    event_type=MEMBER, state_key="*")])
                records = await self._db.event_records_by_nid(txn, set(members.values()))
                loaded = await self._db.events_by_nid(txn, set(members.values()))
                chosen = [records[n] for n in sorted(members.values())
                          if not req.joined_only or loaded[n].membership == "join"]
            else:
                rows = await self._db.memberships_in_room(txn, room.room_nid, joined_only=req.joined_only)
                records = await self._db.event_records_by_nid(txn, {r.event_nid for r in rows})
                chosen = [records[n] for n in sorted(records)]
            return pb.QueryMembershipsForRoomResponse(room_exists=True,
                                                      member_events=await self._protos(txn, chosen))

    async def query_rooms_for_user(self, req: pb.QueryRoomsForUserRequest) -> pb.QueryRoomsForUserResponse:
        async with self._db.reading() as txn:
            room_ids = await self._db.rooms_for_user(txn, req.user_id, req.membership or None)
        return pb.QueryRoomsForUserResponse(room_ids=room_ids)

    # -- visibility ----------------------------------------------------------

    async def _state_events(self, txn: Txn, state: StateMap | None,
                            wanted: Sequence[StateKey]) -> dict[StateKey, Event]:
        if not state:
            return {}
        keys = await self._db.state_tuple_nids(txn, wanted)
        nids = {name: state[key] for name, key in keys.items() if key in state}
        loaded = await self._db.events_by_nid(txn, set(nids.values()))
        return {name: loaded[nid] for name, nid in nids.items() if nid in loaded}

    async def _visible_record(self, txn: Txn, event_id: str) -> EventRecord | None:
        record = (await self._db.event_records_by_id(txn, [event_id])).get(event_id)
        if record is None or record.is_rejected or record.is_outlier:
            return None
        return record

    async def query_user_allowed_to_see_event(
            self, req: pb.QueryUserAllowedToSeeEventRequest) -> pb.QueryAllowedToSeeEventResponse:
        async with self._db.reading() as txn:
            record = await self._visible_record(txn, req.event_id)
            if record is None:
                return pb.QueryAllowedToSeeEventResponse(event_exists=False)
            allowed = await self._user_allowed(txn, record, req.user_id)
            return pb.QueryAllowedToSeeEventResponse(event_exists=True, allowed=allowed)

    async def _user_allowed(self, txn: Txn, record: EventRecord, user_id: str) -> bool:
        """Client-server API, "History visibility": the rules applied with the
        state at the event; for history visibility events and the user's own
        member events, the state before or after it."""
        wanted: list[StateKey] = [(HISTORY_VISIBILITY, ""), (MEMBER, user_id)]
        states = [await self._db.load_state(txn, record.state_before_nid)]
        event = (await self._db.events_by_nid(txn, [record.event_nid]))[record.event_nid]
        if (event.type == HISTORY_VISIBILITY and event.state_key == "") or (
                event.type == MEMBER and event.state_key == user_id):
            states.append(await self._db.load_state(txn, record.state_after_nid))
        joined_later: bool | None = None
        for state in states:
            at = await self._state_events(txn, state, wanted)
            visibility = history_visibility_of(at.get((HISTORY_VISIBILITY, "")))
            member = at.get((MEMBER, user_id))
            membership = member.membership if member is not None else None
            if visibility == "world_readable" or membership == "join":
                return True
            if visibility == "shared":
                if joined_later is None:
                    joined_later = await self._joined_after(txn, record, user_id)
                if joined_later:
                    return True
            if visibility == "invited" and membership == "invite":
                return True
        return False

    async def _joined_after(self, txn: Txn, record: EventRecord, user_id: str) -> bool:
        """Whether the user joined the room at any point after the event (the
        "shared" rule), whether or not they are still in it."""
        current = await self._db.membership_of(txn, record.room_nid, user_id)
        if current is not None and current.membership == "join":
            return True
        if record.stream_position is None:
            return False
        later = await self._db.member_events_after(txn, record.room_nid, user_id, record.stream_position)
        loaded = await self._db.events_by_nid(txn, later)
        return any(event.membership == "join" for event in loaded.values())

    async def query_server_allowed_to_see_event(
            self, req: pb.QueryServerAllowedToSeeEventRequest) -> pb.QueryAllowedToSeeEventResponse:
        async with self._db.reading() as txn:
            record = await self._visible_record(txn, req.event_id)
            if record is None:
                return pb.QueryAllowedToSeeEventResponse(event_exists=False)
            allowed = await self._server_allowed(txn, record, req.server_name)
            return pb.QueryAllowedToSeeEventResponse(event_exists=True, allowed=allowed)

    async def _server_allowed(self, txn: Txn, record: EventRecord, server_name: str) -> bool:
        """As Synapse: world_readable and shared history is visible to any
        server; invited and joined history to a server with a user invited
        or joined (resp. joined) in the state at the event."""
        state = await self._db.load_state(txn, record.state_after_nid or record.state_before_nid)
        at = await self._state_events(txn, state, [(HISTORY_VISIBILITY, "")])
        visibility = history_visibility_of(at.get((HISTORY_VISIBILITY, "")))
        if visibility in ("world_readable", "shared"):
            return True
        member_type = (await self._db.type_nids(txn, [MEMBER], create=False)).get(MEMBER)
        members = {k: v for k, v in state.items() if k[0] == member_type}
        names = await self._db.state_key_names(txn, {sk for _, sk in members})
        ours = [nid for (_, sk), nid in members.items() if _server_of(names[sk]) == server_name]
        for event in (await self._db.events_by_nid(txn, ours)).values():
            if event.membership == "join" or (event.membership == "invite" and visibility == "invited"):
                return True
        return False

    # -- the DAG -------------------------------------------------------------

    async def query_auth_chain(self, req: pb.QueryAuthChainRequest) -> pb.QueryAuthChainResponse:
        async with self._db.reading() as txn:
            records = await self._db.event_records_by_id(txn, list(req.event_ids))
            chain = await self._db.auth_chain_nids(txn, {r.event_nid for r in records.values()})
            chain_records = await self._db.event_records_by_nid(txn, chain)
            ordered = sorted(chain_records.values(), key=lambda r: (r.depth, r.event_nid))
            return pb.QueryAuthChainResponse(auth_chain=await self._protos(txn, ordered))

    async def query_missing_events(self, req: pb.QueryMissingEventsRequest) -> pb.QueryMissingEventsResponse:
        """Server-server API ``/get_missing_events``: a breadth-first walk back
        from ``latest_events`` along prev events, not past ``earliest_events``,
        at most ``limit`` events, only those the asking server may see,
        oldest first."""
        limit = req.limit if req.limit > 0 else DEFAULT_MISSING_EVENTS_LIMIT
        limit = min(limit, MAX_MISSING_EVENTS_LIMIT)
        async with self._db.reading() as txn:
            room = await self._room(txn, req.room_id)
            if room is None:
                raise errors.NotFound(f"unknown room {req.room_id}")
            earliest = set(req.earliest_events)
            seen = set(req.latest_events) | earliest
            frontier = list(req.latest_events)
            found: list[EventRecord] = []
            while frontier and len(found) < limit:
                records = await self._db.event_records_by_id(txn, frontier)
                loaded = await self._db.events_by_nid(txn, [r.event_nid for r in records.values()
                                                            if r.room_nid == room.room_nid])
                next_frontier: list[str] = []
                for event in (loaded[r.event_nid] for r in records.values() if r.event_nid in loaded):
                    for prev_id in event.prev_event_ids:
                        if prev_id not in seen:
                            seen.add(prev_id)
                            next_frontier.append(prev_id)
                prev_records = await self._db.event_records_by_id(txn, next_frontier)
                for prev_id in next_frontier:
                    prev_record = prev_records.get(prev_id)
                    if prev_record is None or prev_record.room_nid != room.room_nid:
                        continue
                    if prev_record.is_rejected:
                        continue
                    if len(found) < limit:
                        found.append(prev_record)
                frontier = [p for p in next_frontier if p in prev_records]
            if req.server_name:
                found = [r for r in found if await self._server_allowed(txn, r, req.server_name)]
            found.sort(key=lambda r: (r.depth, r.event_nid))
            return pb.QueryMissingEventsResponse(events=await self._protos(txn, found))

