"""An in-memory room server for component tests of its callers.

It implements ``roomserver.api.ClientRoomserverAPI`` well enough for the
client API: events are accepted in order, authorised against the room's
current state with the real auth rules, and the state is a plain map (no
forks, so no state resolution). Tests read ``rooms`` and ``inputs`` to see
what the caller sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from myelin.roomserver.v1 import events_pb2, input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as pb

from common import errors
from matrixlib.auth_rules import AuthError, check_auth_rules
from matrixlib.events import CREATE, MEMBER, Event, EventFormatError, StateKey
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from matrixlib.signing import generate_signing_key
from roomserver.internal.input.processor import transaction_key
from roomserver.internal.perform_send import LocalEventSender


@dataclass
class FakeRoom:
    room_id: str
    version: RoomVersion
    events: dict[str, Event] = field(default_factory=dict)
    state: dict[StateKey, str] = field(default_factory=dict)
    latest: list[str] = field(default_factory=list)
    depth: int = 0


def _proto(event: Event) -> events_pb2.Event:
    return events_pb2.Event(event_id=event.event_id, room_version=event.room_version.identifier,
                            pdu_json=event.to_json())


def _server_joined(room: FakeRoom, server_name: str) -> bool:
    return any(t == MEMBER and k.endswith(":" + server_name) and room.events[e].membership == "join"
               for (t, k), e in room.state.items())


class FakeRoomserver:
    def __init__(self) -> None:
        self.rooms: dict[str, FakeRoom] = {}
        # Every InputRoomEvent received, in order.
        self.inputs: list[input_log_pb2.InputRoomEvent] = []
        self.input_calls = 0
        self.query_calls = 0
        # alias -> (room ID, creator)
        self.aliases: dict[str, tuple[str, str]] = {}
        # The event each local transaction produced (as the room server keeps them).
        self.transactions: dict[tuple[str, str, str, str, str], str] = {}
        self.send_calls = 0
        self._signing_key = generate_signing_key("fake")

    async def perform_send_event(self, req: pb.PerformSendEventRequest) -> pb.PerformSendEventResponse:
        """The room server's own code, on this fake's state and input (any
        sender's server counts as this one)."""
        self.send_calls += 1
        sender = LocalEventSender(self, self, req.sender.partition(":")[2], self._signing_key)
        return await sender.perform_send_event(req)

    # -- input ------------------------------------------------------------------

    async def input_room_events(self, req: pb.InputRoomEventsRequest) -> pb.InputRoomEventsResponse:
        self.input_calls += 1
        results = []
        for entry in req.events:
            self.inputs.append(entry)
            results.append(self._input_one(entry))
        return pb.InputRoomEventsResponse(results=results)

    def _input_one(self, entry: input_log_pb2.InputRoomEvent) -> pb.InputEventResult:
        version = KNOWN_ROOM_VERSIONS.get(entry.event.room_version)
        if version is None:
            return pb.InputEventResult(event_id=entry.event.event_id,
                                       outcome=pb.INPUT_OUTCOME_INVALID, reason="unknown room version")
        try:
            event = Event.from_json(entry.event.pdu_json, version, entry.event.event_id or None)
            room_id = event.room_id
        except EventFormatError as e:
            return pb.InputEventResult(event_id=entry.event.event_id,
                                       outcome=pb.INPUT_OUTCOME_INVALID, reason=str(e))
        room = self.rooms.get(room_id)
        if event.type == CREATE and event.state_key == "":
            if room is not None:
                return pb.InputEventResult(event_id=event.event_id, outcome=pb.INPUT_OUTCOME_DUPLICATE)
            room = FakeRoom(room_id=room_id, version=version)
        elif room is None:
            return pb.InputEventResult(event_id=event.event_id, outcome=pb.INPUT_OUTCOME_INVALID,
                                       reason=f"unknown room {room_id}")
        if event.event_id in room.events:
            return pb.InputEventResult(event_id=event.event_id, outcome=pb.INPUT_OUTCOME_DUPLICATE)
        key = transaction_key(room_id, entry)
        if key is not None and key in self.transactions:
            return pb.InputEventResult(event_id=event.event_id, outcome=pb.INPUT_OUTCOME_DUPLICATE,
                                       transaction_event_id=self.transactions[key])
        auth_state = {key: room.events[event_id] for key, event_id in room.state.items()}
        try:
            check_auth_rules(event, auth_state)
        except AuthError as e:
            return pb.InputEventResult(event_id=event.event_id, outcome=pb.INPUT_OUTCOME_REJECTED,
                                       reason=str(e))
        self.rooms[room_id] = room
        room.events[event.event_id] = event
        if event.state_key is not None:
            room.state[event.state_tuple] = event.event_id
        room.latest = [event.event_id]
        room.depth = max(room.depth, event.depth)
        if key is not None:
            self.transactions[key] = event.event_id
        return pb.InputEventResult(event_id=event.event_id, outcome=pb.INPUT_OUTCOME_ACCEPTED)

    # -- state queries ------------------------------------------------------------

    def _state_events(self, room: FakeRoom, wanted: list[events_pb2.StateKeyTuple]) -> list[events_pb2.Event]:
        if not wanted:
            return [_proto(room.events[event_id]) for event_id in room.state.values()]
        found = []
        for key in wanted:
            event_id = room.state.get((key.event_type, key.state_key))
            if event_id is not None:
                found.append(_proto(room.events[event_id]))
        return found

    async def query_latest_events_and_state(
            self, req: pb.QueryLatestEventsAndStateRequest) -> pb.QueryLatestEventsAndStateResponse:
        self.query_calls += 1
        room = self.rooms.get(req.room_id)
        if room is None:
            return pb.QueryLatestEventsAndStateResponse(room_exists=False)
        return pb.QueryLatestEventsAndStateResponse(
            room_exists=True, room_version=room.version.identifier, latest_event_ids=room.latest,
            state_events=self._state_events(room, list(req.state_to_fetch)), depth=room.depth + 1,
            server_joined=bool(req.joined_server_name) and _server_joined(room, req.joined_server_name))

    async def query_state_after_events(
            self, req: pb.QueryStateAfterEventsRequest) -> pb.QueryStateAfterEventsResponse:
        self.query_calls += 1
        room = self.rooms.get(req.room_id)
        if room is None:
            return pb.QueryStateAfterEventsResponse(room_exists=False)
        # Without forks the state after the latest events is the current state.
        return pb.QueryStateAfterEventsResponse(
            room_exists=True, prev_events_exist=all(e in room.events for e in req.prev_event_ids),
            room_version=room.version.identifier,
            state_events=self._state_events(room, list(req.state_to_fetch)))

    async def query_events_by_id(self, req: pb.QueryEventsByIDRequest) -> pb.QueryEventsByIDResponse:
        self.query_calls += 1
        found = []
        for event_id in req.event_ids:
            for room in self.rooms.values():
                if event_id in room.events:
                    found.append(_proto(room.events[event_id]))
                    break
        return pb.QueryEventsByIDResponse(events=found)

    async def query_room_info(self, req: pb.QueryRoomInfoRequest) -> pb.QueryRoomInfoResponse:
        self.query_calls += 1
        room = self.rooms.get(req.room_id)
        if room is None:
            return pb.QueryRoomInfoResponse(room_exists=False)
        joined_users = [k for (t, k), e in room.state.items()
                        if t == MEMBER and room.events[e].membership == "join"]
        servers = dict.fromkeys(user.partition(":")[2] for user in joined_users)
        return pb.QueryRoomInfoResponse(
            room_exists=True, room_version=room.version.identifier,
            create_event_id=room.state[(CREATE, "")], joined_member_count=len(joined_users),
            latest_event_ids=room.latest,
            joined_servers=[s for s in servers if s] if req.include_joined_servers else [],
            server_joined=bool(req.joined_server_name) and req.joined_server_name in servers)

    # -- membership queries ---------------------------------------------------------

    async def query_membership_for_user(
            self, req: pb.QueryMembershipForUserRequest) -> pb.QueryMembershipForUserResponse:
        self.query_calls += 1
        room = self.rooms.get(req.room_id)
        if room is None:
            return pb.QueryMembershipForUserResponse(room_exists=False)
        server_joined = bool(req.joined_server_name) and _server_joined(room, req.joined_server_name)
        event_id = room.state.get((MEMBER, req.user_id))
        if event_id is None:
            return pb.QueryMembershipForUserResponse(room_exists=True, server_joined=server_joined)
        membership = room.events[event_id].membership or ""
        return pb.QueryMembershipForUserResponse(
            room_exists=True, has_been_in_room=True, membership=membership, event_id=event_id,
            is_in_room=membership == "join", server_joined=server_joined)

    async def query_memberships_for_room(
            self, req: pb.QueryMembershipsForRoomRequest) -> pb.QueryMembershipsForRoomResponse:
        self.query_calls += 1
        room = self.rooms.get(req.room_id)
        if room is None:
            return pb.QueryMembershipsForRoomResponse(room_exists=False)
        members = [room.events[e] for (t, _), e in room.state.items() if t == MEMBER]
        if req.joined_only:
            members = [m for m in members if m.membership == "join"]
        return pb.QueryMembershipsForRoomResponse(room_exists=True, member_events=[_proto(m) for m in members])

    async def query_rooms_for_user(self, req: pb.QueryRoomsForUserRequest) -> pb.QueryRoomsForUserResponse:
        self.query_calls += 1
        room_ids = []
        for room in self.rooms.values():
            event_id = room.state.get((MEMBER, req.user_id))
            if event_id is None:
                continue
            membership = room.events[event_id].membership
            if (req.membership and membership == req.membership) or (
                    not req.membership and membership != "leave"):
                room_ids.append(room.room_id)
        return pb.QueryRoomsForUserResponse(room_ids=room_ids)

    # -- aliases (as roomserver/internal/perform_aliases.py) ---------------------

    async def set_room_alias(self, req: pb.SetRoomAliasRequest) -> pb.SetRoomAliasResponse:
        if req.room_id not in self.rooms:
            raise errors.NotFound(f"unknown room {req.room_id}")
        if req.alias in self.aliases:
            raise errors.MatrixError(f"room alias {req.alias} already exists", http_status=409)
        self.aliases[req.alias] = (req.room_id, req.creator)
        return pb.SetRoomAliasResponse()

    async def get_room_id_for_alias(self, req: pb.GetRoomIDForAliasRequest) -> pb.GetRoomIDForAliasResponse:
        room_id, creator = self.aliases.get(req.alias, ("", ""))
        return pb.GetRoomIDForAliasResponse(room_id=room_id, creator=creator)

    async def get_aliases_for_room(self, req: pb.GetAliasesForRoomRequest) -> pb.GetAliasesForRoomResponse:
        return pb.GetAliasesForRoomResponse(
            aliases=sorted(a for a, (room_id, _) in self.aliases.items() if room_id == req.room_id))

    async def remove_room_alias(self, req: pb.RemoveRoomAliasRequest) -> pb.RemoveRoomAliasResponse:
        found = self.aliases.pop(req.alias, None)
        if found is None:
            raise errors.NotFound(f"unknown room alias {req.alias}")
        return pb.RemoveRoomAliasResponse(room_id=found[0], creator=found[1])
