"""The media API with real storage (SQLite, the local disk store), a real
Sanic app on a free port, a fake user API for access tokens and, where a
test needs one, a fake federation API serving "remote" media."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from myelin.federationapi.v1 import federationapi_pb2 as fed_pb
from PIL import Image

from common import errors
from common.config import Config
from common.http import make_app, serve_app
from mediaapi.component import MediaAPI, open_mediaapi
from tests.fakes.userapi import FakeUserAPI

SERVER_NAME = "media.test"
REMOTE_NAME = "remote.test"


def png_bytes(width: int, height: int, color: tuple[int, int, int, int] = (200, 30, 30, 255)) -> bytes:
    out = io.BytesIO()
    image = Image.new("RGBA", (width, height), color)
    # A second colour in one corner, so crops and scales differ from a flat image.
    image.paste((10, 200, 10, 128), (0, 0, width // 3, height // 3))
    image.save(out, format="PNG")
    return out.getvalue()


def jpeg_bytes(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 30, 200)).save(out, format="JPEG", quality=90)
    return out.getvalue()


class FakeFederation:
    """Answers download_media from a dict; counts the calls."""

    def __init__(self) -> None:
        self.media: dict[tuple[str, str], fed_pb.DownloadMediaResponse] = {}
        self.calls: list[tuple[str, str]] = []

    async def download_media(self, req: fed_pb.DownloadMediaRequest) -> fed_pb.DownloadMediaResponse:
        self.calls.append((req.server_name, req.media_id))
        found = self.media.get((req.server_name, req.media_id))
        if found is None:
            raise errors.NotFound("no such media")
        if len(found.content) > req.max_bytes:
            raise errors.TooLarge("too large")
        return found


@dataclass
class MediaEnv:
    mediaapi: MediaAPI
    client: httpx.AsyncClient
    users: FakeUserAPI
    federation: FakeFederation
    token: str
    user_id: str
    base: str

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    async def upload(self, data: bytes, content_type: str, filename: str | None = None) -> str:
        params = {"filename": filename} if filename else {}
        r = await self.client.post("/_matrix/media/v3/upload", content=data, params=params,
                                   headers={**self.auth(), "Content-Type": content_type})
        assert r.status_code == 200, r.text
        content_uri = r.json()["content_uri"]
        assert isinstance(content_uri, str) and content_uri.startswith(f"mxc://{SERVER_NAME}/")
        return content_uri.removeprefix(f"mxc://{SERVER_NAME}/")

    def stored_files(self) -> list[Path]:
        root = self.mediaapi.config.data_dir / "media"
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def media_config(tmp_path: Path) -> Config:
    config = Config(server_name=SERVER_NAME, data_dir=tmp_path, signing_key_path=tmp_path / "signing.key")
    config.media.max_upload_size_bytes = 300_000
    return config


@pytest.fixture
async def media_env(tmp_path: Path) -> AsyncIterator[MediaEnv]:
    config = media_config(tmp_path)
    users = FakeUserAPI(SERVER_NAME)
    federation = FakeFederation()
    mediaapi = await open_mediaapi(config, users, federation=federation)
    serving = await serve_app(make_app(f"media_test_{uuid.uuid4().hex}", [mediaapi.blueprint]), "127.0.0.1:0")
    base = f"http://127.0.0.1:{serving.port}"
    user_id, token = users.add_user("alice")
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        try:
            yield MediaEnv(mediaapi, client, users, federation, token, user_id, base)
        finally:
            await serving.stop()
            await mediaapi.close()
