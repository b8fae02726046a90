"""The gRPC binding's client side: ``RoomserverAPI`` over a channel."""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf.message import Message
from myelin.roomserver.v1 import roomserver_pb2 as pb
from myelin.roomserver.v1 import roomserver_pb2_grpc

from common.grpc_binding import GRPC_OPTIONS, call_remote
from roomserver.api import RoomserverAPI

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


def roomserver_channel(address: str) -> grpc.aio.Channel:
    """A channel to a room server with message limits large enough for big rooms."""
    return grpc.aio.insecure_channel(address, options=GRPC_OPTIONS)


class GrpcRoomserverClient:
    """Implements ``roomserver.api.RoomserverAPI`` by calling a room server."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = roomserver_pb2_grpc.RoomserverStub(channel)

    async def input_room_events(self, req: pb.InputRoomEventsRequest) -> pb.InputRoomEventsResponse:
        return await call_remote(self._stub.InputRoomEvents, req)

    async def perform_send_event(self, req: pb.PerformSendEventRequest) -> pb.PerformSendEventResponse:
        return await call_remote(self._stub.PerformSendEvent, req)

    async def query_latest_events_and_state(
            self, req: pb.QueryLatestEventsAndStateRequest) -> pb.QueryLatestEventsAndStateResponse:
        return await call_remote(self._stub.QueryLatestEventsAndState, req)

    async def query_state_after_events(
            self, req: pb.QueryStateAfterEventsRequest) -> pb.QueryStateAfterEventsResponse:
        return await call_remote(self._stub.QueryStateAfterEvents, req)

    async def query_events_by_id(self, req: pb.QueryEventsByIDRequest) -> pb.QueryEventsByIDResponse:
        return await call_remote(self._stub.QueryEventsByID, req)

    async def query_room_info(self, req: pb.QueryRoomInfoRequest) -> pb.QueryRoomInfoResponse:
        return await call_remote(self._stub.QueryRoomInfo, req)

    async def query_membership_for_user(
            self, req: pb.QueryMembershipForUserRequest) -> pb.QueryMembershipForUserResponse:
        return await call_remote(self._stub.QueryMembershipForUser, req)

    async def query_memberships_for_room(
            self, req: pb.QueryMembershipsForRoomRequest) -> pb.QueryMembershipsForRoomResponse:
        return await call_remote(self._stub.QueryMembershipsForRoom, req)

    async def query_rooms_for_user(self, req: pb.QueryRoomsForUserRequest) -> pb.QueryRoomsForUserResponse:
        return await call_remote(self._stub.QueryRoomsForUser, req)

    async def query_server_allowed_to_see_event(
            self, req: pb.QueryServerAllowedToSeeEventRequest) -> pb.QueryAllowedToSeeEventResponse:
        return await call_remote(self._stub.QueryServerAllowedToSeeEvent, req)

    async def query_user_allowed_to_see_event(
            self, req: pb.QueryUserAllowedToSeeEventRequest) -> pb.QueryAllowedToSeeEventResponse:
        return await call_remote(self._stub.QueryUserAllowedToSeeEvent, req)

    async def query_auth_chain(self, req: pb.QueryAuthChainRequest) -> pb.QueryAuthChainResponse:
        return await call_remote(self._stub.QueryAuthChain, req)

    async def query_missing_events(self, req: pb.QueryMissingEventsRequest) -> pb.QueryMissingEventsResponse:
        return await call_remote(self._stub.QueryMissingEvents, req)

    async def set_room_alias(self, req: pb.SetRoomAliasRequest) -> pb.SetRoomAliasResponse:
        return await call_remote(self._stub.SetRoomAlias, req)

    async def get_room_id_for_alias(self, req: pb.GetRoomIDForAliasRequest) -> pb.GetRoomIDForAliasResponse:
        return await call_remote(self._stub.GetRoomIDForAlias, req)

    async def get_aliases_for_room(self, req: pb.GetAliasesForRoomRequest) -> pb.GetAliasesForRoomResponse:
        return await call_remote(self._stub.GetAliasesForRoom, req)

    async def remove_room_alias(self, req: pb.RemoveRoomAliasRequest) -> pb.RemoveRoomAliasResponse:
        return await call_remote(self._stub.RemoveRoomAlias, req)


def _implements_the_contract(client: GrpcRoomserverClient) -> RoomserverAPI:
    """Never called: mypy checks here that the gRPC binding satisfies the
    whole ``RoomserverAPI``."""
    return client
