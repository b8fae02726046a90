"""The federation API's Python interface: what other components ask of
other servers (joins, leaves, invites, knocks, backfill, remote queries,
remote media).

Requests and responses are the messages of
protos/myelin/federationapi/v1/federationapi.proto; the in-process binding is
``federationapi.internal.api.FederationInternalAPIImpl``, the gRPC binding
``federationapi.grpc.client``. Failures are ``common.errors.MatrixError``s.
"""

from __future__ import annotations

from typing import Protocol

from myelin.federationapi.v1 import federationapi_pb2 as pb


class FederationInternalAPI(Protocol):
    async def perform_join(self, req: pb.PerformJoinRequest) -> pb.PerformJoinResponse: ...

    async def perform_leave(self, req: pb.PerformLeaveRequest) -> pb.PerformLeaveResponse: ...

    async def perform_invite(self, req: pb.PerformInviteRequest) -> pb.PerformInviteResponse: ...

    async def perform_knock(self, req: pb.PerformKnockRequest) -> pb.PerformKnockResponse: ...

    async def perform_backfill(self, req: pb.PerformBackfillRequest) -> pb.PerformBackfillResponse: ...

    async def query_profile(self, req: pb.QueryProfileRequest) -> pb.QueryProfileResponse: ...

    async def query_room_alias(self, req: pb.QueryRoomAliasRequest) -> pb.QueryRoomAliasResponse: ...

    async def query_keys(self, req: pb.QueryKeysRequest) -> pb.QueryKeysResponse: ...

    async def claim_keys(self, req: pb.ClaimKeysRequest) -> pb.ClaimKeysResponse: ...

    async def query_user_devices(self, req: pb.QueryUserDevicesRequest) -> pb.QueryUserDevicesResponse: ...

    async def query_public_rooms(self, req: pb.QueryPublicRoomsRequest) -> pb.QueryPublicRoomsResponse: ...

    async def download_media(self, req: pb.DownloadMediaRequest) -> pb.DownloadMediaResponse: ...
