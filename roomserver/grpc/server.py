"""The gRPC binding's server side: exposes ANY ``RoomserverAPI``
implementation (the real one, or a fake in tests) as the Roomserver service."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
from myelin.roomserver.v1 import roomserver_pb2 as pb
from myelin.roomserver.v1 import roomserver_pb2_grpc

from common.grpc_binding import GRPC_OPTIONS, serve_call
from roomserver.api import RoomserverAPI


class RoomserverServicer(roomserver_pb2_grpc.RoomserverServicer):
    def __init__(self, impl: RoomserverAPI) -> None:
        self._impl = impl

    async def InputRoomEvents(self, request: pb.InputRoomEventsRequest,
                              context: grpc.aio.ServicerContext[Any, Any]) -> pb.InputRoomEventsResponse:
        return await serve_call(self._impl.input_room_events, request, context)

    async def PerformSendEvent(self, request: pb.PerformSendEventRequest,
                               context: grpc.aio.ServicerContext[Any, Any]) -> pb.PerformSendEventResponse:
        return await serve_call(self._impl.perform_send_event, request, context)

    async def QueryLatestEventsAndState(self, request: pb.QueryLatestEventsAndStateRequest,
                                        context: grpc.aio.ServicerContext[Any, Any]
                                        ) -> pb.QueryLatestEventsAndStateResponse:
        return await serve_call(self._impl.query_latest_events_and_state, request, context)

    async def QueryStateAfterEvents(self, request: pb.QueryStateAfterEventsRequest,
                                    context: grpc.aio.ServicerContext[Any, Any]
                                    ) -> pb.QueryStateAfterEventsResponse:
        return await serve_call(self._impl.query_state_after_events, request, context)

    async def QueryEventsByID(self, request: pb.QueryEventsByIDRequest,
                              context: grpc.aio.ServicerContext[Any, Any]) -> pb.QueryEventsByIDResponse:
        return await serve_call(self._impl.query_events_by_id, request, context)

    async def QueryMembershipForUser(self, request: pb.QueryMembershipForUserRequest,
                                     context: grpc.aio.ServicerContext[Any, Any]
                                     ) -> pb.QueryMembershipForUserResponse:
        return await serve_call(self._impl.query_membership_for_user, request, context)

    async def QueryMembershipsForRoom(self, request: pb.QueryMembershipsForRoomRequest,
                                      context: grpc.aio.ServicerContext[Any, Any]
                                      ) -> pb.QueryMembershipsForRoomResponse:
        return await serve_call(self._impl.query_memberships_for_room, request, context)

    async def QueryRoomInfo(self, request: pb.QueryRoomInfoRequest,
                            context: grpc.aio.ServicerContext[Any, Any]) -> pb.QueryRoomInfoResponse:
        return await serve_call(self._impl.query_room_info, request, context)

    async def QueryServerAllowedToSeeEvent(self, request: pb.QueryServerAllowedToSeeEventRequest,
                                           context: grpc.aio.ServicerContext[Any, Any]
                                           ) -> pb.QueryAllowedToSeeEventResponse:
        return await serve_call(self._impl.query_server_allowed_to_see_event, request, context)

    async def QueryUserAllowedToSeeEvent(self, request: pb.QueryUserAllowedToSeeEventRequest,
                                         context: grpc.aio.ServicerContext[Any, Any]
                                         ) -> pb.QueryAllowedToSeeEventResponse:
        return await serve_call(self._impl.query_user_allowed_to_see_event, request, context)

    async def QueryAuthChain(self, request: pb.QueryAuthChainRequest,
                             context: grpc.aio.ServicerContext[Any, Any]) -> pb.QueryAuthChainResponse:
        return await serve_call(self._impl.query_auth_chain, request, context)

    async def QueryMissingEvents(self, request: pb.QueryMissingEventsRequest,
                                 context: grpc.aio.ServicerContext[Any, Any]
                                 ) -> pb.QueryMissingEventsResponse:
        return await serve_call(self._impl.query_missing_events, request, context)

    async def QueryRoomsForUser(self, request: pb.QueryRoomsForUserRequest,
                                context: grpc.aio.ServicerContext[Any, Any]) -> pb.QueryRoomsForUserResponse:
        return await serve_call(self._impl.query_rooms_for_user, request, context)


    async def SetRoomAlias(self, request: pb.SetRoomAliasRequest,
                           context: grpc.aio.ServicerContext[Any, Any]) -> pb.SetRoomAliasResponse:
        return await serve_call(self._impl.set_room_alias, request, context)

    async def GetRoomIDForAlias(self, request: pb.GetRoomIDForAliasRequest,
                                context: grpc.aio.ServicerContext[Any, Any]) -> pb.GetRoomIDForAliasResponse:
        return await serve_call(self._impl.get_room_id_for_alias, request, context)

    async def GetAliasesForRoom(self, request: pb.GetAliasesForRoomRequest,
                                context: grpc.aio.ServicerContext[Any, Any]) -> pb.GetAliasesForRoomResponse:
        return await serve_call(self._impl.get_aliases_for_room, request, context)

    async def RemoveRoomAlias(self, request: pb.RemoveRoomAliasRequest,
                              context: grpc.aio.ServicerContext[Any, Any]) -> pb.RemoveRoomAliasResponse:
        return await serve_call(self._impl.remove_room_alias, request, context)


async def serve_grpc(api: RoomserverAPI, address: str, *,
                     also: Sequence[Callable[[grpc.aio.Server], None]] = ()) -> tuple[grpc.aio.Server, int]:
    """Starts a gRPC server for ``api`` on ``address`` ("host:port"; port 0
    picks a free one) and answers (server, port). Stop it with ``server.stop``.
    ``also`` adds other services on the same port (the log relay)."""
    server = grpc.aio.server(options=GRPC_OPTIONS)
    roomserver_pb2_grpc.add_RoomserverServicer_to_server(RoomserverServicer(api), server)
    for add_service in also:
        add_service(server)
    port = server.add_insecure_port(address)
    await server.start()
    return server, port
