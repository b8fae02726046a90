"""Remote users' device keys, one-time keys and device lists."""

from __future__ import annotations

from myelin.federationapi.v1 import federationapi_pb2 as pb

from common import errors
from federationapi.internal.context import FederationContext


async def query_keys(context: FederationContext, req: pb.QueryKeysRequest) -> pb.QueryKeysResponse:
    raise errors.Unrecognized("query_keys over federation is not implemented yet")

async def claim_keys(context: FederationContext, req: pb.ClaimKeysRequest) -> pb.ClaimKeysResponse:
    raise errors.Unrecognized("claim_keys over federation is not implemented yet")

async def query_user_devices(context: FederationContext, req: pb.QueryUserDevicesRequest) -> pb.QueryUserDevicesResponse:
    raise errors.Unrecognized("query_user_devices over federation is not implemented yet")
