"""The content repository over HTTP: uploads, downloads and their headers,
thumbnails, limits, async uploads, authentication, remote media caching."""

from __future__ import annotations

import asyncio
import io

import httpx
from myelin.federationapi.v1 import federationapi_pb2 as fed_pb
from PIL import Image

from mediaapi.headers import CONTENT_SECURITY_POLICY
from tests.component.mediaapi.conftest import REMOTE_NAME, SERVER_NAME, MediaEnv, jpeg_bytes, png_bytes

V1 = "/_matrix/client/v1/media"


def image_of(response: httpx.Response) -> Image.Image:
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


async def test_upload_and_download_round_trip(media_env: MediaEnv) -> None:
    data = b"hello, media\n" * 100
    media_id = await media_env.upload(data, "text/plain", "notes.txt")
    r = await media_env.client.get(f"{V1}/download/{SERVER_NAME}/{media_id}", headers=media_env.auth())
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["content-disposition"] == 'inline; filename="notes.txt"'
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cross-origin-resource-policy"] == "cross-origin"
    # The deprecated endpoint serves it too, and a file name in the path wins.
    r = await media_env.client.get(f"/_matrix/media/v3/download/{SERVER_NAME}/{media_id}/r\u00e9sum\u00e9.txt")
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-disposition"] == "inline; filename*=utf-8''r%C3%A9sum%C3%A9.txt"


async def test_html_is_served_as_an_attachment_in_a_sandbox(media_env: MediaEnv) -> None:
    page = b"<html><script>alert(document.cookie)</script></html>"
    media_id = await media_env.upload(page, "text/html", "page.html")
    r = await media_env.client.get(f"{V1}/download/{SERVER_NAME}/{media_id}", headers=media_env.auth())
    assert r.status_code == 200 and r.content == page
    assert r.headers["content-disposition"] == 'attachment; filename="page.html"'
    assert r.headers["content-security-policy"].startswith("sandbox; default-src 'none'; script-src 'none';")
    assert r.headers["x-content-type-options"] == "nosniff"
    # A content type built to break the headers is served as octet-stream.
    media_id = await media_env.upload(b"x", "text/html; x=\"a\"\"b")
    r = await media_env.client.get(f"{V1}/download/{SERVER_NAME}/{media_id}", headers=media_env.auth())
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == "attachment"


async def test_upload_over_the_limit_is_refused_and_nothing_is_kept(media_env: MediaEnv) -> None:
    too_big = b"\0" * 300_001
    r = await media_env.client.post("/_matrix/media/v3/upload", content=too_big,
                                    headers={**media_env.auth(), "Content-Type": "application/octet-stream"})
    assert r.status_code == 413
    assert r.json()["errcode"] == "M_TOO_LARGE"

    # Without a declared length (chunked), the stream is cut at the limit.
    async def chunked() -> object:
        for _ in range(40):
            yield b"\1" * 10_000

    r = await media_env.client.post("/_matrix/media/v3/upload", content=chunked(),  # type: ignore[arg-type]
                                    headers={**media_env.auth(), "Content-Type": "application/octet-stream"})
    assert r.status_code == 413
    assert r.json()["errcode"] == "M_TOO_LARGE"
    assert media_env.stored_files() == []
    # Exactly at the limit is fine; the server still serves.
    media_id = await media_env.upload(b"\2" * 300_000, "application/octet-stream")
    r = await media_env.client.get(f"{V1}/download/{SERVER_NAME}/{media_id}", headers=media_env.auth())
    assert len(r.content) == 300_000
    assert r.headers["content-disposition"] == "attachment"
    assert len(media_env.stored_files()) == 1
    r = await media_env.client.get(f"{V1}/config", headers=media_env.auth())
    assert r.json() == {"m.upload.size": 300_000}


async def test_v1_endpoints_need_an_access_token(media_env: MediaEnv) -> None:
    media_id = await media_env.upload(b"secret", "text/plain")
    for path in (f"{V1}/download/{SERVER_NAME}/{media_id}", f"{V1}/download/{SERVER_NAME}/{media_id}/a.txt",
                 f"{V1}/thumbnail/{SERVER_NAME}/{media_id}?width=32&height=32", f"{V1}/config",
                 f"{V1}/preview_url?url=http://example.com/"):
        r = await media_env.client.get(path)
        assert r.status_code == 401, path
        assert r.json()["errcode"] == "M_MISSING_TOKEN"
        r = await media_env.client.get(path, headers=media_env.auth("nope"))
        assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN", path
    r = await media_env.client.post("/_matrix/media/v3/upload", content=b"x")
    assert r.status_code == 401
    r = await media_env.client.post("/_matrix/media/v1/create")
    assert r.status_code == 401


async def test_unknown_and_malformed_media_ids(media_env: MediaEnv) -> None:
    for media_id in ("doesnotexist", "..", "a.b", "%2E%2E%2Fetc"):
        r = await media_env.client.get(f"{V1}/download/{SERVER_NAME}/{media_id}", headers=media_env.auth())
        assert r.status_code == 404, media_id
        assert r.json()["errcode"] in ("M_NOT_FOUND", "M_UNRECOGNIZED"), media_id
    r = await media_env.client.get(f"{V1}/download/not a server/abc", headers=media_env.auth())
    assert r.status_code == 404


async def test_thumbnails_of_a_png_at_scale_and_crop_made_once(media_env: MediaEnv) -> None:
    media_id = await media_env.upload(png_bytes(1000, 500), "image/png", "wide.png")
    url = f"{V1}/thumbnail/{SERVER_NAME}/{media_id}"
    r = await media_env.client.get(url, params={"width": 300, "height": 200, "method": "scale"},
                                   headers=media_env.auth())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    image = image_of(r)
    # The 320x240 box: the aspect is kept, and it is not smaller than asked.
    assert image.size == (320, 160)
    assert image.mode == "RGBA"
    r = await media_env.client.get(url, params={"width": 50, "height": 50, "method": "crop"},
                                   headers=media_env.auth())
    assert image_of(r).size == (96, 96)
    r = await media_env.client.get(url, params={"width": 20, "height": 20, "method": "crop"},
                                   headers=media_env.auth())
    assert image_of(r).size == (32, 32)
    # Scale (the default) fits the image in the box: a 700x100 box needs only 200x100 of a 2:1 image.
    r = await media_env.client.get(url, params={"width": 700, "height": 100}, headers=media_env.auth())
    assert image_of(r).size == (320, 160)
    r = await media_env.client.get(url, params={"width": 700, "height": 350}, headers=media_env.auth())
    assert image_of(r).size == (800, 400)
    # Bigger than every thumbnail: the original.
    r = await media_env.client.get(url, params={"width": 900, "height": 900, "method": "scale"},
                                   headers=media_env.auth())
    assert image_of(r).size == (1000, 500)
    assert media_env.mediaapi.repository.thumbnail_runs == 1
    # Served again (also over the deprecated endpoint): still made once.
    r = await media_env.client.get(f"/_matrix/media/v3/thumbnail/{SERVER_NAME}/{media_id}",
                                   params={"width": 300, "height": 200, "method": "scale"})
    assert image_of(r).size == (320, 160)
    assert media_env.mediaapi.repository.thumbnail_runs == 1
    assert len(await media_env.mediaapi.database.get_thumbnails(SERVER_NAME, media_id)) == 5


async def test_concurrent_thumbnail_requests_make_them_once(media_env: MediaEnv) -> None:
    media_id = await media_env.upload(png_bytes(400, 400), "image/png")
    url = f"{V1}/thumbnail/{SERVER_NAME}/{media_id}"
    responses = await asyncio.gather(*[
        media_env.client.get(url, params={"width": 32, "height": 32, "method": "crop"}, headers=media_env.auth())
        for _ in range(5)])
    assert [image_of(r).size for r in responses] == [(32, 32)] * 5
    assert media_env.mediaapi.repository.thumbnail_runs == 1


async def test_thumbnails_of_a_jpeg(media_env: MediaEnv) -> None:
    media_id = await media_env.upload(jpeg_bytes(640, 640), "image/jpeg", "photo.jpg")
    url = f"{V1}/thumbnail/{SERVER_NAME}/{media_id}"
    r = await media_env.client.get(url, params={"width": 64, "height": 64, "method": "crop"},
                                   headers=media_env.auth())
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    image = image_of(r)
    assert image.format == "JPEG" and image.size == (96, 96)
    r = await media_env.client.get(url, params={"width": 400, "height": 300, "method": "scale"},
                                   headers=media_env.auth())
    assert image_of(r).size == (480, 480)  # from the 640x480 box
    # An image smaller than the request is answered with itself.
    small_id = await media_env.upload(jpeg_bytes(20, 10), "image/jpeg")
    r = await media_env.client.get(f"{V1}/thumbnail/{SERVER_NAME}/{small_id}",
                                   params={"width": 32, "height": 32, "method": "crop"}, headers=media_env.auth())
    assert image_of(r).size == (20, 10)


async def test_broken_image_gives_no_thumbnail_and_no_crash(media_env: MediaEnv) -> None:
    broken = png_bytes(100, 100)[:60] + b"garbage" * 10
    media_id = await media_env.upload(broken, "image/png")
    for _ in range(2):
        r = await media_env.client.get(f"{V1}/thumbnail/{SERVER_NAME}/{media_id}",
                                       params={"width": 32, "height": 32}, headers=media_env.auth())
        assert r.status_code == 400
        assert r.json()["errcode"] == "M_UNKNOWN"
    assert await media_env.mediaapi.database.get_thumbnails(SERVER_NAME, media_id) == []
    # Not an image at all.
    text_id = await media_env.upload(b"plain", "text/plain")
    r = await media_env.client.get(f"{V1}/thumbnail/{SERVER_NAME}/{text_id}",
                                   params={"width": 32, "height": 32}, headers=media_env.auth())
    assert r.status_code == 400
    # Bad parameters.
    r = await media_env.client.get(f"{V1}/thumbnail/{SERVER_NAME}/{text_id}",
                                   params={"width": 32, "height": 32, "method": "zoom"}, headers=media_env.auth())
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    r = await media_env.client.get(f"{V1}/thumbnail/{SERVER_NAME}/{text_id}", params={"width": 32},
                                   headers=media_env.auth())
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
    # The server still serves, the broken file included.
    r = await media_env.client.get(f"{V1}/download/{SERVER_NAME}/{media_id}", headers=media_env.auth())
    assert r.status_code == 200 and r.content == broken
    good_id = await media_env.upload(png_bytes(200, 200), "image/png")
    r = await media_env.client.get(f"{V1}/thumbnail/{SERVER_NAME}/{good_id}",
                                   params={"width": 32, "height": 32, "method": "crop"}, headers=media_env.auth())
    assert image_of(r).size == (32, 32)


async def test_image_with_too_many_pixels_is_not_thumbnailed(media_env: MediaEnv) -> None:
    media_env.mediaapi.config.media.max_thumbnail_source_pixels = 100 * 100
    media_id = await media_env.upload(png_bytes(200, 200), "image/png")
    r = await media_env.client.get(f"{V1}/thumbnail/{SERVER_NAME}/{media_id}",
                                   params={"width": 32, "height": 32}, headers=media_env.auth())
    assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"


async def test_create_then_upload(media_env: MediaEnv) -> None:
    r = await media_env.client.post("/_matrix/media/v1/create", headers=media_env.auth())
    assert r.status_code == 200
    body = r.json()
    media_id = body["content_uri"].removeprefix(f"mxc://{SERVER_NAME}/")
    assert body["unused_expires_at"] > 0
    # Not there yet: a short wait ends in M_NOT_YET_UPLOADED.
    r = await media_env.client.get(f"{V1}/download/{SERVER_NAME}/{media_id}", params={"timeout_ms": 100},
                                   headers=media_env.auth())
    assert r.status_code == 504 and r.json()["errcode"] == "M_NOT_YET_UPLOADED"
    # Someone else may not upload to it.
    _, bob_token = media_env.users.add_user("bob")
    put_url = f"/_matrix/media/v3/upload/{SERVER_NAME}/{media_id}"
    r = await media_env.client.put(put_url, content=b"x", headers=media_env.auth(bob_token))
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    # A waiting download gets the content as soon as it is uploaded.
    waiting = asyncio.create_task(media_env.client.get(
        f"{V1}/download/{SERVER_NAME}/{media_id}", params={"timeout_ms": 10000}, headers=media_env.auth()))
    await asyncio.sleep(0.3)
    r = await media_env.client.put(put_url, content=b"later", params={"filename": "l.txt"},
                                   headers={**media_env.auth(), "Content-Type": "text/plain"})
    assert r.status_code == 200 and r.json() == {}
    r = await waiting
    assert r.status_code == 200 and r.content == b"later"
    assert r.headers["content-disposition"] == 'inline; filename="l.txt"'
    r = await media_env.client.put(put_url, content=b"again", headers=media_env.auth())
    assert r.status_code == 409 and r.json()["errcode"] == "M_CANNOT_OVERWRITE_MEDIA"
    r = await media_env.client.put(f"/_matrix/media/v3/upload/{SERVER_NAME}/neverCreated", content=b"x",
                                   headers=media_env.auth())
    assert r.status_code == 404


async def test_remote_media_is_fetched_once_and_cached(media_env: MediaEnv) -> None:
    media_env.federation.media[(REMOTE_NAME, "remoteMedia1")] = fed_pb.DownloadMediaResponse(
        content_type="image/png", filename="far.png", content=png_bytes(400, 300))
    url = f"{V1}/download/{REMOTE_NAME}/remoteMedia1"
    for _ in range(3):
        r = await media_env.client.get(url, headers=media_env.auth())
        assert r.status_code == 200
        assert r.headers["content-disposition"] == 'inline; filename="far.png"'
        assert image_of(r).size == (400, 300)
    r = await media_env.client.get(f"{V1}/thumbnail/{REMOTE_NAME}/remoteMedia1",
                                   params={"width": 96, "height": 96, "method": "crop"}, headers=media_env.auth())
    assert image_of(r).size == (96, 96)
    assert media_env.federation.calls == [(REMOTE_NAME, "remoteMedia1")]
    # allow_remote=false on the deprecated endpoint does not fetch, but the cache is local now.
    r = await media_env.client.get(f"/_matrix/media/v3/download/{REMOTE_NAME}/other",
                                   params={"allow_remote": "false"})
    assert r.status_code == 404
    assert media_env.federation.calls == [(REMOTE_NAME, "remoteMedia1")]
    r = await media_env.client.get(f"{V1}/download/{REMOTE_NAME}/missing", headers=media_env.auth())
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    media_env.federation.media[(REMOTE_NAME, "huge")] = fed_pb.DownloadMediaResponse(
        content_type="application/octet-stream", content=b"\0" * 300_001)
    r = await media_env.client.get(f"{V1}/download/{REMOTE_NAME}/huge", headers=media_env.auth())
    assert r.status_code == 502 and r.json()["errcode"] == "M_TOO_LARGE"


async def test_local_media_for_federation(media_env: MediaEnv) -> None:
    media_id = await media_env.upload(png_bytes(500, 500), "image/png", "pic.png")
    local = media_env.mediaapi.local_media
    content = await local.local_media_content(media_id)
    assert (content.content_type, content.filename) == ("image/png", "pic.png")
    assert Image.open(io.BytesIO(content.content)).size == (500, 500)
    thumb = await local.local_thumbnail_content(media_id, 90, 90, "crop")
    assert Image.open(io.BytesIO(thumb.content)).size == (96, 96)
