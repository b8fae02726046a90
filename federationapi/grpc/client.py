"""The gRPC binding's client side: ``FederationInternalAPI`` over a channel."""

from __future__ import annotations

import grpc
from myelin.federationapi.v1 import federationapi_pb2 as pb
from myelin.federationapi.v1 import federationapi_pb2_grpc

from common.grpc_binding import call_remote


class GrpcFederationAPIClient:
    """Implements ``federationapi.api.FederationInternalAPI`` by calling a federation API."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = federationapi_pb2_grpc.FederationAPIStub(channel)

    async def perform_join(self, req: pb.PerformJoinRequest) -> pb.PerformJoinResponse:
        return await call_remote(self._stub.PerformJoin, req)

    async def perform_leave(self, req: pb.PerformLeaveRequest) -> pb.PerformLeaveResponse:
        return await call_remote(self._stub.PerformLeave, req)

    async def perform_invite(self, req: pb.PerformInviteRequest) -> pb.PerformInviteResponse:
        return await call_remote(self._stub.PerformInvite, req)

    async def perform_knock(self, req: pb.PerformKnockRequest) -> pb.PerformKnockResponse:
        return await call_remote(self._stub.PerformKnock, req)

    async def perform_backfill(self, req: pb.PerformBackfillRequest) -> pb.PerformBackfillResponse:
        return await call_remote(self._stub.PerformBackfill, req)

    async def query_profile(self, req: pb.QueryProfileRequest) -> pb.QueryProfileResponse:
        return await call_remote(self._stub.QueryProfile, req)

    async def query_room_alias(self, req: pb.QueryRoomAliasRequest) -> pb.QueryRoomAliasResponse:
        return await call_remote(self._stub.QueryRoomAlias, req)

    async def query_keys(self, req: pb.QueryKeysRequest) -> pb.QueryKeysResponse:
        return await call_remote(self._stub.QueryKeys, req)

    async def claim_keys(self, req: pb.ClaimKeysRequest) -> pb.ClaimKeysResponse:
        return await call_remote(self._stub.ClaimKeys, req)

    async def query_user_devices(self, req: pb.QueryUserDevicesRequest) -> pb.QueryUserDevicesResponse:
        return await call_remote(self._stub.QueryUserDevices, req)

    async def query_public_rooms(self, req: pb.QueryPublicRoomsRequest) -> pb.QueryPublicRoomsResponse:
        return await call_remote(self._stub.QueryPublicRooms, req)

    async def download_media(self, req: pb.DownloadMediaRequest) -> pb.DownloadMediaResponse:
        return await call_remote(self._stub.DownloadMedia, req)
