"""GET /_matrix/federation/v1/media/download/{mediaId} and /thumbnail/{mediaId}.

Spec: data/api/server-server/content_repository.yaml. This server's media
is read from the media API (``mediaapi.api.LocalMediaAPI``: in process, or
over its HTTP port in a split deployment) and answered as
``multipart/mixed``: a JSON part (an empty object, the metadata) and then
the bytes with their ``Content-Type`` and ``Content-Disposition``.
"""

from __future__ import annotations

import secrets
from urllib.parse import unquote

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import query_int
from mediaapi.api import LocalMediaAPI, MediaContent
from mediaapi.headers import content_disposition, sanitize_content_type

V1 = "/_matrix/federation/v1"


def multipart_body(media: MediaContent, boundary: str) -> bytes:
    content_type = sanitize_content_type(media.content_type)
    head = (
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n"
        f"--{boundary}\r\nContent-Type: {content_type}\r\n"
        f"Content-Disposition: {content_disposition(content_type, media.filename)}\r\n\r\n"
    ).encode()
    return head + media.content + f"\r\n--{boundary}--\r\n".encode()


def multipart_response(media: MediaContent) -> HTTPResponse:
    boundary = secrets.token_hex(16)
    return HTTPResponse(body=multipart_body(media, boundary), status=200,
                        content_type=f"multipart/mixed; boundary={boundary}")


def add_media_routes(blueprint: Blueprint, media: LocalMediaAPI) -> None:
    async def download(request: Request, media_id: str) -> HTTPResponse:
        return multipart_response(await media.local_media_content(unquote(media_id)))

    async def thumbnail(request: Request, media_id: str) -> HTTPResponse:
        width, height = query_int(request, "width"), query_int(request, "height")
        if width is None or height is None:
            raise errors.MissingParam("width and height are required")
        method = request.args.get("method", "scale")
        return multipart_response(await media.local_thumbnail_content(unquote(media_id), width, height, method))

    blueprint.add_route(download, f"{V1}/media/download/<media_id>", methods=["GET"], name="media_download")
    blueprint.add_route(thumbnail, f"{V1}/media/thumbnail/<media_id>", methods=["GET"], name="media_thumbnail")
