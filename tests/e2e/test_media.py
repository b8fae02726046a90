"""The media repository in real processes: an upload downloaded and
thumbnailed in both process modes (through the router in the split
deployment, where the media API is its own process), and remote media
fetched from another Myelin over federation, cached, and still served once
the origin is gone."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.e2e.harness import RunningHomeserver, free_port, start_monolith
from tests.e2e.test_federation_keys import SynapsePeer, myelin, synapse_peer  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

V3 = "/_matrix/client/v3"
MEDIA_V1 = "/_matrix/client/v1/media"


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 220)).save(out, format="PNG")
    return out.getvalue()


async def register(http: httpx.AsyncClient) -> dict[str, str]:
    response = await http.post(f"{V3}/register", json={
        "username": f"media{uuid.uuid4().hex[:6]}", "password": "a-long-password",
        "auth": {"type": "m.login.dummy"}})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def upload(http: httpx.AsyncClient, auth: dict[str, str], data: bytes, content_type: str,
                 filename: str) -> str:
    response = await http.post("/_matrix/media/v3/upload", content=data, params={"filename": filename},
                               headers={**auth, "Content-Type": content_type})
    assert response.status_code == 200, response.text
    content_uri: str = response.json()["content_uri"]
    return content_uri


async def test_upload_download_and_thumbnail(homeserver: RunningHomeserver) -> None:
    async with httpx.AsyncClient(base_url=homeserver.base_url, timeout=60) as http:
        auth = await register(http)
        image = png(640, 480)
        content_uri = await upload(http, auth, image, "image/png", "blue.png")
        server_name, media_id = content_uri.removeprefix("mxc://").split("/")
        assert server_name == homeserver.server_name
        r = await http.get(f"{MEDIA_V1}/download/{server_name}/{media_id}", headers=auth)
        assert r.status_code == 200, r.text
        assert r.content == image
        assert r.headers["content-type"] == "image/png"
        assert r.headers["content-disposition"] == 'inline; filename="blue.png"'
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"].startswith("sandbox;")
        r = await http.get(f"{MEDIA_V1}/download/{server_name}/{media_id}")
        assert r.status_code == 401
        r = await http.get(f"{MEDIA_V1}/thumbnail/{server_name}/{media_id}",
                           params={"width": 96, "height": 96, "method": "crop"}, headers=auth)
        assert r.status_code == 200, r.text
        assert Image.open(io.BytesIO(r.content)).size == (96, 96)
        r = await http.get(f"{MEDIA_V1}/config", headers=auth)
        assert r.json() == {"m.upload.size": 50 * 1024 * 1024}
        page = await upload(http, auth, b"<script>alert(1)</script>", "text/html", "x.html")
        r = await http.get(f"/_matrix/media/v3/download/{page.removeprefix('mxc://')}")
        assert r.status_code == 200
        assert r.headers["content-disposition"] == 'attachment; filename="x.html"'


@pytest.fixture
def two_federating(tmp_path: Path) -> Iterator[list[tuple[RunningHomeserver, str]]]:
    servers: list[tuple[RunningHomeserver, str]] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            server_name = f"localhost:{port}"
            servers.append((start_monolith(tmp_path / name, "--server-name", server_name,
                                           "--federation-port", str(port), "--insecure-federation-for-tests"),
                            server_name))
        yield servers
    finally:
        for hs, _ in servers:
            hs.stop()


async def test_remote_media_over_federation_is_cached(
        two_federating: list[tuple[RunningHomeserver, str]]) -> None:
    (a, a_name), (b, _) = two_federating
    async with httpx.AsyncClient(base_url=a.base_url, timeout=60) as http_a, \
            httpx.AsyncClient(base_url=b.base_url, timeout=60) as http_b:
        auth_a, auth_b = await register(http_a), await register(http_b)
        image = png(800, 600)
        content_uri = await upload(http_a, auth_a, image, "image/png", "from-a.png")
        path = content_uri.removeprefix("mxc://")
        assert path.startswith(a_name + "/")
        r = await http_b.get(f"{MEDIA_V1}/download/{path}", headers=auth_b)
        assert r.status_code == 200, r.text
        assert r.content == image
        assert r.headers["content-disposition"] == 'inline; filename="from-a.png"'
        r = await http_b.get(f"{MEDIA_V1}/download/{a_name}/doesNotExist", headers=auth_b)
        assert r.status_code == 404, r.text
        # A is gone: B serves the copy it cached, and thumbnails it itself.
        a.stop()
        r = await http_b.get(f"{MEDIA_V1}/download/{path}", headers=auth_b)
        assert r.status_code == 200 and r.content == image
        r = await http_b.get(f"{MEDIA_V1}/thumbnail/{path}", params={"width": 320, "height": 240},
                             headers=auth_b)
        assert r.status_code == 200
        assert Image.open(io.BytesIO(r.content)).size == (320, 240)


async def synapse_token(peer: SynapsePeer) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=peer.client_url, timeout=30) as http:
        body = {"username": f"m{uuid.uuid4().hex[:6]}", "password": "pw-123456", "auth": {"type": "m.login.dummy"}}
        r = await http.post(f"{V3}/register", json=body)
        if r.status_code == 401:
            r = await http.post(f"{V3}/register", json={**body, "auth": {"type": "m.login.dummy",
                                                                         "session": r.json()["session"]}})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_media_between_myelin_and_synapse(
        synapse_peer: SynapsePeer, myelin: tuple[RunningHomeserver, str, int]) -> None:  # noqa: F811
    hs, myelin_name, _ = myelin
    synapse_auth = await synapse_token(synapse_peer)
    async with httpx.AsyncClient(base_url=hs.base_url, timeout=60) as http, \
            httpx.AsyncClient(base_url=synapse_peer.client_url, timeout=60) as synapse_http:
        myelin_auth = await register(http)
        # Synapse's user downloads Myelin media: Synapse fetches it from Myelin's federation API.
        ours = png(300, 200)
        content_uri = await upload(http, myelin_auth, ours, "image/png", "myelin.png")
        r = await synapse_http.get(f"{MEDIA_V1}/download/{content_uri.removeprefix('mxc://')}",
                                   headers=synapse_auth)
        assert r.status_code == 200, r.text
        assert r.content == ours
        # Myelin's user downloads Synapse media: Myelin fetches it from Synapse's federation API.
        theirs = png(500, 400)
        r = await synapse_http.post("/_matrix/media/v3/upload", content=theirs, params={"filename": "syn.png"},
                                    headers={**synapse_auth, "Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        path = r.json()["content_uri"].removeprefix("mxc://")
        assert path.startswith(synapse_peer.server_name + "/")
        r = await http.get(f"{MEDIA_V1}/download/{path}", headers=myelin_auth)
        assert r.status_code == 200, r.text
        assert r.content == theirs
        assert r.headers["content-type"] == "image/png"
        r = await http.get(f"{MEDIA_V1}/thumbnail/{path}", params={"width": 32, "height": 32, "method": "crop"},
                           headers=myelin_auth)
        assert r.status_code == 200
        assert Image.open(io.BytesIO(r.content)).size == (32, 32)
    assert myelin_name != synapse_peer.server_name
