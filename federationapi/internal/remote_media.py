"""Remote media downloads for the media repository's cache."""

from __future__ import annotations

from myelin.federationapi.v1 import federationapi_pb2 as pb

from common import errors
from federationapi.internal.context import FederationContext


async def download_media(context: FederationContext, req: pb.DownloadMediaRequest) -> pb.DownloadMediaResponse:
    raise errors.Unrecognized("download_media over federation is not implemented yet")
