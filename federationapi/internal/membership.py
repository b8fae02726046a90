"""Joining, leaving, inviting and knocking across servers (make_*/send_*, invite v2)."""

from __future__ import annotations

from myelin.federationapi.v1 import federationapi_pb2 as pb

from common import errors
from federationapi.internal.context import FederationContext


async def perform_join(context: FederationContext, req: pb.PerformJoinRequest) -> pb.PerformJoinResponse:
    raise errors.Unrecognized("perform_join over federation is not implemented yet")

async def perform_leave(context: FederationContext, req: pb.PerformLeaveRequest) -> pb.PerformLeaveResponse:
    raise errors.Unrecognized("perform_leave over federation is not implemented yet")

async def perform_invite(context: FederationContext, req: pb.PerformInviteRequest) -> pb.PerformInviteResponse:
    raise errors.Unrecognized("perform_invite over federation is not implemented yet")

async def perform_knock(context: FederationContext, req: pb.PerformKnockRequest) -> pb.PerformKnockResponse:
    raise errors.Unrecognized("perform_knock over federation is not implemented yet")
