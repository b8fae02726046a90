"""The media API's storage on PostgreSQL (the migration, pending uploads,
thumbnails recorded once), and the HTTP binding of LocalMediaAPI that the
federation API uses in a split deployment."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from common import errors
from common.storage import open_database
from mediaapi.client import HttpLocalMedia
from mediaapi.component import build
from mediaapi.storage.store import one_chunk
from tests.component.mediaapi.conftest import SERVER_NAME, MediaEnv, media_config, png_bytes
from tests.e2e.harness import free_port
from tests.fakes.userapi import FakeUserAPI


@pytest.mark.postgres
async def test_media_on_postgres(tmp_path: Path, fresh_postgres_database: str) -> None:
    mediaapi = build(media_config(tmp_path), await open_database(fresh_postgres_database, "mediaapi"),
                     FakeUserAPI(SERVER_NAME))
    repository = mediaapi.repository
    try:
        content_uri = await repository.upload("@a:media.test", "image/png", "p.png", one_chunk(png_bytes(300, 300)))
        media_id = content_uri.rsplit("/", 1)[1]
        served = await repository.thumbnail(SERVER_NAME, media_id, 90, 90, "crop")
        assert Image.open(io.BytesIO(await repository.read(served))).size == (96, 96)
        await repository.thumbnail(SERVER_NAME, media_id, 300, 200, "scale")
        assert repository.thumbnail_runs == 1
        created, _ = await repository.create("@a:media.test")
        created_id = created.rsplit("/", 1)[1]
        assert await mediaapi.database.count_pending_uploads("@a:media.test", 0) == 1
        await repository.upload_to("@a:media.test", SERVER_NAME, created_id, "text/plain", None, one_chunk(b"hi"))
        assert await mediaapi.database.count_pending_uploads("@a:media.test", 0) == 0
        served = await repository.download(SERVER_NAME, created_id)
        assert await repository.read(served) == b"hi"
    finally:
        await mediaapi.close()


async def test_local_media_over_http(media_env: MediaEnv) -> None:
    media_id = await media_env.upload(png_bytes(400, 200), "image/png", "wide.png")
    local = HttpLocalMedia(media_env.base.removeprefix("http://"), SERVER_NAME)
    try:
        content = await local.local_media_content(media_id)
        assert (content.content_type, content.filename) == ("image/png", "wide.png")
        assert Image.open(io.BytesIO(content.content)).size == (400, 200)
        thumb = await local.local_thumbnail_content(media_id, 300, 100, "scale")
        assert Image.open(io.BytesIO(thumb.content)).size == (320, 160)
        with pytest.raises(errors.NotFound):
            await local.local_media_content("noSuchMedia")
    finally:
        await local.close()
    # Unknown remote media is never fetched on another server's behalf.
    assert media_env.federation.calls == []


async def test_media_api_unreachable_is_unavailable() -> None:
    local = HttpLocalMedia(f"127.0.0.1:{free_port()}", SERVER_NAME)
    try:
        with pytest.raises(errors.Unavailable):
            await local.local_media_content("abc")
    finally:
        await local.close()
