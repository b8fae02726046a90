"""The content repository's client endpoints.

Authenticated (Matrix 1.11): ``/_matrix/client/v1/media/{download,thumbnail,config,preview_url}``.
Uploads: ``POST /_matrix/media/v3/upload``, ``POST /_matrix/media/v1/create`` and
``PUT /_matrix/media/v3/upload/{serverName}/{mediaId}``. The deprecated
``/_matrix/media/v3/{download,thumbnail,config,preview_url}`` are served as the
spec freezes them (download and thumbnail without an access token).

Uploads are streamed to the media store and stopped at the size limit;
downloads are streamed from it with the headers of ``internal/headers.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from myelin.userapi.v1 import userapi_pb2
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.config import MediaConfig
from common.guest_access import check_guest_request
from common.http import access_token, json_response, query_int
from mediaapi.headers import media_headers
from mediaapi.internal.preview import UrlPreviewer
from mediaapi.internal.repository import (
    DEFAULT_DOWNLOAD_TIMEOUT_MS,
    MAX_DOWNLOAD_TIMEOUT_MS,
    MediaRepository,
    ServedMedia,
)
from mediaapi.storage.store import BlobNotFound
from userapi.api import AuthenticationAPI

AUTHED_PREFIX = "/_matrix/client/v1/media"
# r0 is what clients older than v1.1 use; Synapse still answers it.
LEGACY_PREFIXES = ("/_matrix/media/v3", "/_matrix/media/r0")


async def authenticate(userapi: AuthenticationAPI, request: Request) -> str:
    """The calling user's ID; MissingToken / UnknownToken (401) otherwise."""
    device = await userapi.query_access_token(
        userapi_pb2.QueryAccessTokenRequest(access_token=access_token(request)))
    # Guests may download and thumbnail only (common/guest_access.py).
    check_guest_request(device.is_guest, request)
    return device.user_id


def _flag(request: Request, name: str, default: bool) -> bool:
    value = request.args.get(name)
    if value is None:
        return default
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise errors.InvalidParam(f"{name} must be true or false")


def _timeout_ms(request: Request) -> int:
    value = query_int(request, "timeout_ms", DEFAULT_DOWNLOAD_TIMEOUT_MS, minimum=0,
                      maximum=MAX_DOWNLOAD_TIMEOUT_MS)
    assert value is not None
    return value


def _required_int(request: Request, name: str) -> int:
    value = query_int(request, name)
    if value is None:
        raise errors.MissingParam(f"{name} is required")
    return value


async def _body_chunks(request: Request) -> AsyncIterator[bytes]:
    stream: Any = request.stream  # sanic's Http1; typed as its abstract Stream
    if stream is None:
        yield request.body
        return
    while (chunk := await stream.read()) is not None:
        yield chunk


def _check_declared_length(request: Request, settings: MediaConfig) -> None:
    # Refuse before reading anything when the client says how much is coming.
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > settings.max_upload_size_bytes:
        raise errors.TooLarge(f"Content is larger than the limit of {settings.max_upload_size_bytes} bytes")


async def send_media(request: Request, repository: MediaRepository, served: ServedMedia,
                     filename: str | None = None) -> None:
    """Streams stored media to the client with the safe headers."""
    chunks = repository.chunks(served)
    try:
        first = await anext(chunks, b"")
    except BlobNotFound:
        raise errors.NotFound("Media not found") from None
    headers = media_headers(served.content_type, filename or served.filename)
    content_type = headers.pop("Content-Type")
    headers["Content-Length"] = str(served.size_bytes)
    response = await request.respond(status=200, headers=headers, content_type=content_type)
    if first:
        await response.send(first)
    async for chunk in chunks:
        await response.send(chunk)
    await response.eof()


def register(blueprint: Blueprint, repository: MediaRepository, userapi: AuthenticationAPI,
             previewer: UrlPreviewer, settings: MediaConfig) -> None:
    async def upload(request: Request) -> HTTPResponse:
        user_id = await authenticate(userapi, request)
        _check_declared_length(request, settings)
        content_uri = await repository.upload(user_id, request.headers.get("content-type"),
                                              request.args.get("filename"), _body_chunks(request))
        return json_response({"content_uri": content_uri})

    async def upload_to(request: Request, server_name: str, media_id: str) -> HTTPResponse:
        user_id = await authenticate(userapi, request)
        _check_declared_length(request, settings)
        await repository.upload_to(user_id, unquote(server_name), unquote(media_id), request.headers.get("content-type"),
                                   request.args.get("filename"), _body_chunks(request))
        return json_response({})

    async def create(request: Request) -> HTTPResponse:
        user_id = await authenticate(userapi, request)
        content_uri, expires = await repository.create(user_id)
        return json_response({"content_uri": content_uri, "unused_expires_at": expires})

    async def download(request: Request, server_name: str, media_id: str, file_name: str | None,
                       *, authed: bool) -> None:
        server_name, media_id = unquote(server_name), unquote(media_id)
        if file_name is not None:
            file_name = unquote(file_name)
        if authed:
            await authenticate(userapi, request)
        allow_remote = authed or _flag(request, "allow_remote", True)
        served = await repository.download(server_name, media_id, allow_remote=allow_remote,
                                           timeout_ms=_timeout_ms(request))
        await send_media(request, repository, served, file_name)

    async def thumbnail(request: Request, server_name: str, media_id: str, *, authed: bool) -> None:
        server_name, media_id = unquote(server_name), unquote(media_id)
        if authed:
            await authenticate(userapi, request)
        allow_remote = authed or _flag(request, "allow_remote", True)
        width, height = _required_int(request, "width"), _required_int(request, "height")
        # "animated" is accepted and ignored: thumbnails are never animated, which the spec allows.
        _flag(request, "animated", False)
        served = await repository.thumbnail(server_name, media_id, width, height,
                                            request.args.get("method", "scale"), allow_remote=allow_remote,
                                            timeout_ms=_timeout_ms(request))
        await send_media(request, repository, served)

    async def config(request: Request) -> HTTPResponse:
        await authenticate(userapi, request)
        return json_response({"m.upload.size": settings.max_upload_size_bytes})

    async def preview_url(request: Request) -> HTTPResponse:
        user_id = await authenticate(userapi, request)
        if not settings.url_preview_enabled:
            raise errors.Unrecognized("URL previews are disabled on this server")
        url = request.args.get("url")
        if not url:
            raise errors.MissingParam("url is required")
        return json_response(await previewer.preview(url, user_id))

    async def authed_download(request: Request, server_name: str, media_id: str) -> None:
        await download(request, server_name, media_id, None, authed=True)

    async def authed_download_named(request: Request, server_name: str, media_id: str, file_name: str) -> None:
        await download(request, server_name, media_id, file_name, authed=True)

    async def legacy_download(request: Request, server_name: str, media_id: str) -> None:
        await download(request, server_name, media_id, None, authed=False)

    async def legacy_download_named(request: Request, server_name: str, media_id: str, file_name: str) -> None:
        await download(request, server_name, media_id, file_name, authed=False)

    async def authed_thumbnail(request: Request, server_name: str, media_id: str) -> None:
        await thumbnail(request, server_name, media_id, authed=True)

    async def legacy_thumbnail(request: Request, server_name: str, media_id: str) -> None:
        await thumbnail(request, server_name, media_id, authed=False)

    blueprint.add_route(authed_download, f"{AUTHED_PREFIX}/download/<server_name>/<media_id>", methods=["GET"])
    blueprint.add_route(authed_download_named, f"{AUTHED_PREFIX}/download/<server_name>/<media_id>/<file_name>",
                        methods=["GET"])
    blueprint.add_route(authed_thumbnail, f"{AUTHED_PREFIX}/thumbnail/<server_name>/<media_id>", methods=["GET"])
    blueprint.add_route(config, f"{AUTHED_PREFIX}/config", methods=["GET"], name="authed_config")
    blueprint.add_route(preview_url, f"{AUTHED_PREFIX}/preview_url", methods=["GET"], name="authed_preview_url")
    blueprint.add_route(create, "/_matrix/media/v1/create", methods=["POST"])
    for prefix in LEGACY_PREFIXES:
        version = prefix.rsplit("/", 1)[1]
        blueprint.add_route(upload, f"{prefix}/upload", methods=["POST"], stream=True, name=f"upload_{version}")
        blueprint.add_route(upload_to, f"{prefix}/upload/<server_name>/<media_id>", methods=["PUT"],
                            stream=True, name=f"upload_to_{version}")
        blueprint.add_route(legacy_download, f"{prefix}/download/<server_name>/<media_id>", methods=["GET"],
                            name=f"download_{version}")
        blueprint.add_route(legacy_download_named, f"{prefix}/download/<server_name>/<media_id>/<file_name>",
                            methods=["GET"], name=f"download_named_{version}")
        blueprint.add_route(legacy_thumbnail, f"{prefix}/thumbnail/<server_name>/<media_id>", methods=["GET"],
                            name=f"thumbnail_{version}")
        blueprint.add_route(config, f"{prefix}/config", methods=["GET"], name=f"config_{version}")
        blueprint.add_route(preview_url, f"{prefix}/preview_url", methods=["GET"], name=f"preview_url_{version}")
