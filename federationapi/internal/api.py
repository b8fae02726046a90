"""The in-process binding of ``federationapi.api.FederationInternalAPI``.

Each verb lives in its own module (``perform_join.py``, ``backfill.py``,
``remote_queries.py``, ``remote_keys.py``, ``remote_media.py``...); this
class only hands each call its context, so the bindings and the verbs
change independently.
"""

from __future__ import annotations

from myelin.federationapi.v1 import federationapi_pb2 as pb

from federationapi.internal import backfill, membership, remote_keys, remote_media, remote_queries
from federationapi.internal.context import FederationContext


class FederationInternalAPIImpl:
    def __init__(self, context: FederationContext) -> None:
        self.context = context

    async def perform_join(self, req: pb.PerformJoinRequest) -> pb.PerformJoinResponse:
        return await membership.perform_join(self.context, req)

    async def perform_leave(self, req: pb.PerformLeaveRequest) -> pb.PerformLeaveResponse:
        return await membership.perform_leave(self.context, req)

    async def perform_invite(self, req: pb.PerformInviteRequest) -> pb.PerformInviteResponse:
        return await membership.perform_invite(self.context, req)

    async def perform_knock(self, req: pb.PerformKnockRequest) -> pb.PerformKnockResponse:
        return await membership.perform_knock(self.context, req)

    async def perform_backfill(self, req: pb.PerformBackfillRequest) -> pb.PerformBackfillResponse:
        return await backfill.perform_backfill(self.context, req)

    async def query_profile(self, req: pb.QueryProfileRequest) -> pb.QueryProfileResponse:
        return await remote_queries.query_profile(self.context, req)

    async def query_room_alias(self, req: pb.QueryRoomAliasRequest) -> pb.QueryRoomAliasResponse:
        return await remote_queries.query_room_alias(self.context, req)

    async def query_public_rooms(self, req: pb.QueryPublicRoomsRequest) -> pb.QueryPublicRoomsResponse:
        return await remote_queries.query_public_rooms(self.context, req)

    async def query_keys(self, req: pb.QueryKeysRequest) -> pb.QueryKeysResponse:
        return await remote_keys.query_keys(self.context, req)

    async def claim_keys(self, req: pb.ClaimKeysRequest) -> pb.ClaimKeysResponse:
        return await remote_keys.claim_keys(self.context, req)

    async def query_user_devices(self, req: pb.QueryUserDevicesRequest) -> pb.QueryUserDevicesResponse:
        return await remote_keys.query_user_devices(self.context, req)

    async def download_media(self, req: pb.DownloadMediaRequest) -> pb.DownloadMediaResponse:
        return await remote_media.download_media(self.context, req)
