"""The gRPC binding's server side: exposes any ``FederationInternalAPI``
implementation as the FederationAPI service."""

from __future__ import annotations

from typing import Any

import grpc
from myelin.federationapi.v1 import federationapi_pb2 as pb
from myelin.federationapi.v1 import federationapi_pb2_grpc

from common.grpc_binding import GRPC_OPTIONS, serve_call
from federationapi.api import FederationInternalAPI


class FederationAPIServicer(federationapi_pb2_grpc.FederationAPIServicer):
    def __init__(self, impl: FederationInternalAPI) -> None:
        self._impl = impl

    async def PerformJoin(self, request: pb.PerformJoinRequest,
                  context: grpc.aio.ServicerContext[Any, Any]) -> pb.PerformJoinResponse:
        return await serve_call(self._impl.perform_join, request, context)

    async def PerformLeave(self, request: pb.PerformLeaveRequest,
                  context: grpc.aio.ServicerContext[Any, Any]) -> pb.PerformLeaveResponse:
        return await serve_call(self._impl.perform_leave, request, context)

    async def PerformInvite(self, request: pb.PerformInviteRequest,
                  context: grpc.aio.ServicerContext[Any, Any]) -> pb.PerformInviteResponse:
        return await serve_call(self._impl.perform_invite, request, context)

    async def PerformKnock(self, request: pb.PerformKnockRequest,
                  context: grpc.aio.ServicerContext[Any, Any]) -> pb.PerformKnockResponse:
        return await serve_call(self._impl.perform_knock, request, context)

    async def PerformBackfill(self, request: pb.PerformBackfillRequest,
                  context: grpc.aio.ServicerContext[Any, Any]) -> pb.PerformBackfillResponse:
        return await serve_call(self._impl.perform_backfill, request, context)

    async def QueryProfile(self, request: pb.QueryProfileRequest,
                  context: grpc.aio.ServicerContext[Any, Any]) -> pb.QueryProfileResponse:
        return await serve_call(self._impl.query_profile, request, context)

    async def QueryRoomAlias(self, request: pb.QueryRoomAliasRequest,
                  context: grpc.aio.ServicerContext[Any, Any]) -> pb.QueryRoomAliasResponse:
        return await serve_call(self._impl.query_room_alias, request, context)

    async def QueryKeys(self, request: pb.QueryKeysRequest,
                  context: grpc.aio.ServicerContext[Any, Any]) -> pb.QueryKeysResponse:
        return await serve_call(self._impl.query_keys, request, context)

    async def ClaimKeys(self, request: pb.ClaimKeysRequest,
                  context: grpc.aio.ServicerContext[Any, Any]) -> pb.ClaimKeysResponse:
        return await serve_call(self._impl.claim_keys, request, context)

    async def QueryUserDevices(self, request: pb.QueryUserDevicesRequest,
                  context: grpc.aio.ServicerContext[Any, Any]) -> pb.QueryUserDevicesResponse:
        return await serve_call(self._impl.query_user_devices, request, context)

    async def QueryPublicRooms(self, request: pb.QueryPublicRoomsRequest,
                  context: grpc.aio.ServicerContext[Any, Any]) -> pb.QueryPublicRoomsResponse:
        return await serve_call(self._impl.query_public_rooms, request, context)

    async def DownloadMedia(self, request: pb.DownloadMediaRequest,
                  context: grpc.aio.ServicerContext[Any, Any]) -> pb.DownloadMediaResponse:
        return await serve_call(self._impl.download_media, request, context)


async def serve_grpc(api: FederationInternalAPI, address: str) -> tuple[grpc.aio.Server, int]:
    """Starts a gRPC server for ``api`` on ``address`` ("host:port"; port 0
    picks a free one) and answers (server, port)."""
    server = grpc.aio.server(options=GRPC_OPTIONS)
    federationapi_pb2_grpc.add_FederationAPIServicer_to_server(FederationAPIServicer(api), server)
    port = server.add_insecure_port(address)
    await server.start()
    return server, port
