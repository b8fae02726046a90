"""The room server's Python interface: what other components may call.

Requests and responses are the generated protobuf messages of
protos/myelin/roomserver/v1/roomserver.proto, so the in-process binding (the
implementation itself) and the gRPC binding (``roomserver.grpc.client``)
satisfy the same types. Failures are ``common.errors.MatrixError``s.

Each caller gets an interface cut to what it needs, so what it may call is
checked by mypy: ``ClientRoomserverAPI`` for the client API,
``SyncRoomserverAPI`` for the sync API, ``FederationRoomserverAPI`` for the
federation API. ``RoomserverAPI`` is the whole service.
"""

from __future__ import annotations

from typing import Protocol

from myelin.roomserver.v1 import roomserver_pb2 as pb


class InputAPI(Protocol):
    async def input_room_events(self, req: pb.InputRoomEventsRequest) -> pb.InputRoomEventsResponse: ...


class SendAPI(Protocol):
    """A local user's event, built, signed and input by the room server."""

    async def perform_send_event(self, req: pb.PerformSendEventRequest) -> pb.PerformSendEventResponse: ...


class StateQueryAPI(Protocol):
    async def query_latest_events_and_state(
        self, req: pb.QueryLatestEventsAndStateRequest) -> pb.QueryLatestEventsAndStateResponse: ...

    async def query_state_after_events(
        self, req: pb.QueryStateAfterEventsRequest) -> pb.QueryStateAfterEventsResponse: ...

    async def query_events_by_id(self, req: pb.QueryEventsByIDRequest) -> pb.QueryEventsByIDResponse: ...

    async def query_room_info(self, req: pb.QueryRoomInfoRequest) -> pb.QueryRoomInfoResponse: ...


class MembershipQueryAPI(Protocol):
    async def query_membership_for_user(
        self, req: pb.QueryMembershipForUserRequest) -> pb.QueryMembershipForUserResponse: ...

    async def query_memberships_for_room(
        self, req: pb.QueryMembershipsForRoomRequest) -> pb.QueryMembershipsForRoomResponse: ...

    async def query_rooms_for_user(
        self, req: pb.QueryRoomsForUserRequest) -> pb.QueryRoomsForUserResponse: ...


class VisibilityQueryAPI(Protocol):
    async def query_server_allowed_to_see_event(
        self, req: pb.QueryServerAllowedToSeeEventRequest) -> pb.QueryAllowedToSeeEventResponse: ...

    async def query_user_allowed_to_see_event(
        self, req: pb.QueryUserAllowedToSeeEventRequest) -> pb.QueryAllowedToSeeEventResponse: ...


class DAGQueryAPI(Protocol):
    async def query_auth_chain(self, req: pb.QueryAuthChainRequest) -> pb.QueryAuthChainResponse: ...

    async def query_missing_events(
        self, req: pb.QueryMissingEventsRequest) -> pb.QueryMissingEventsResponse: ...


class AliasAPI(Protocol):
    """The room alias directory (the room server is its authority)."""

    async def set_room_alias(self, req: pb.SetRoomAliasRequest) -> pb.SetRoomAliasResponse: ...

    async def get_room_id_for_alias(self, req: pb.GetRoomIDForAliasRequest) -> pb.GetRoomIDForAliasResponse: ...

    async def get_aliases_for_room(self, req: pb.GetAliasesForRoomRequest) -> pb.GetAliasesForRoomResponse: ...

    async def remove_room_alias(self, req: pb.RemoveRoomAliasRequest) -> pb.RemoveRoomAliasResponse: ...


class ClientRoomserverAPI(InputAPI, SendAPI, StateQueryAPI, MembershipQueryAPI, AliasAPI, Protocol):
    """What the client API calls: have the room server send a user's event,
    or build events from current state and input them; the room alias
    directory."""


class SyncRoomserverAPI(StateQueryAPI, MembershipQueryAPI, VisibilityQueryAPI, Protocol):
    """What the sync API calls when its read model must be rebuilt."""


class FederationRoomserverAPI(InputAPI, StateQueryAPI, MembershipQueryAPI, VisibilityQueryAPI,
                              DAGQueryAPI, AliasAPI, Protocol):
    """What the federation API calls to serve and accept federation (and
    answer alias queries)."""


class RoomserverAPI(FederationRoomserverAPI, ClientRoomserverAPI, SyncRoomserverAPI, AliasAPI, Protocol):
    """The whole service, as the gRPC servicer exposes it."""
