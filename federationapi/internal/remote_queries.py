"""Remote profile, alias and public room directory lookups."""

from __future__ import annotations

from myelin.federationapi.v1 import federationapi_pb2 as pb

from common import errors
from federationapi.internal.context import FederationContext


async def query_profile(context: FederationContext, req: pb.QueryProfileRequest) -> pb.QueryProfileResponse:
    raise errors.Unrecognized("query_profile over federation is not implemented yet")

async def query_room_alias(context: FederationContext, req: pb.QueryRoomAliasRequest) -> pb.QueryRoomAliasResponse:
    raise errors.Unrecognized("query_room_alias over federation is not implemented yet")

async def query_public_rooms(context: FederationContext, req: pb.QueryPublicRoomsRequest) -> pb.QueryPublicRoomsResponse:
    raise errors.Unrecognized("query_public_rooms over federation is not implemented yet")
