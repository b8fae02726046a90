"""Fetching history older than ours from servers in the room."""

from __future__ import annotations

from myelin.federationapi.v1 import federationapi_pb2 as pb

from common import errors
from federationapi.internal.context import FederationContext


async def perform_backfill(context: FederationContext, req: pb.PerformBackfillRequest) -> pb.PerformBackfillResponse:
    raise errors.Unrecognized("perform_backfill over federation is not implemented yet")
