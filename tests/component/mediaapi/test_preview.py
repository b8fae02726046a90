"""URL previews: private addresses refused after DNS, a real page previewed
(OpenGraph tags, title fallback, its image stored as media), cached."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sanic import Request
from sanic.response import HTTPResponse, raw

from common.http import ServingApp, make_app, serve_app
from tests.component.mediaapi.conftest import SERVER_NAME, MediaEnv, png_bytes

V1 = "/_matrix/client/v1/media"

PAGE = b"""<!doctype html><html><head>
<title>  The  Title </title>
<meta property="og:description" content="A page about things">
<meta property="og:site_name" content="Example">
<meta property="og:image" content="/logo.png">
<meta name="description" content="ignored, og:description wins">
</head><body><p>hello</p></body></html>"""


class PageServer:
    def __init__(self) -> None:
        self.hits: list[str] = []
        self.serving: ServingApp | None = None

    @property
    def port(self) -> int:
        assert self.serving is not None
        return self.serving.port


@pytest.fixture
async def page_server() -> AsyncIterator[PageServer]:
    server = PageServer()
    app = make_app(f"pages_{uuid.uuid4().hex}", [])
    logo = png_bytes(48, 24)

    async def page(request: Request) -> HTTPResponse:
        server.hits.append(request.path)
        return raw(PAGE, content_type="text/html; charset=utf-8")

    async def image(request: Request) -> HTTPResponse:
        server.hits.append(request.path)
        return raw(logo, content_type="image/png")

    async def bare(request: Request) -> HTTPResponse:
        return raw(b"<html><head><title>Bare</title><meta name='description' content='Desc'></head></html>",
                   content_type="text/html")

    async def moved(request: Request) -> HTTPResponse:
        return raw(b"", status=302, headers={"Location": "/bare"})

    app.add_route(page, "/page")
    app.add_route(image, "/logo.png")
    app.add_route(bare, "/bare")
    app.add_route(moved, "/moved")
    server.serving = await serve_app(app, "127.0.0.1:0")
    try:
        yield server
    finally:
        await server.serving.stop()


async def test_loopback_urls_are_refused(media_env: MediaEnv, page_server: PageServer) -> None:
    for url in (f"http://127.0.0.1:{page_server.port}/page", f"http://localhost:{page_server.port}/page",
                f"http://[::1]:{page_server.port}/page", "http://10.1.2.3/", "http://169.254.169.254/latest"):
        r = await media_env.client.get(f"{V1}/preview_url", params={"url": url}, headers=media_env.auth())
        assert r.status_code == 403, (url, r.text)
        assert r.json()["errcode"] == "M_FORBIDDEN"
    assert page_server.hits == []


async def test_a_public_looking_name_resolving_to_loopback_is_refused(media_env: MediaEnv,
                                                                      page_server: PageServer) -> None:
    async def lookup(host: str, port: int) -> list[str]:
        return {"news.example.com": ["93.184.215.14", "127.0.0.1"]}.get(host, [])

    media_env.mediaapi.previewer.address_lookup = lookup
    r = await media_env.client.get(f"{V1}/preview_url", params={"url": f"http://news.example.com:{page_server.port}/page"},
                                   headers=media_env.auth())
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    assert page_server.hits == []


async def test_preview_of_a_local_page_when_private_addresses_are_allowed(media_env: MediaEnv,
                                                                          page_server: PageServer) -> None:
    media_env.mediaapi.config.media.url_preview_allow_private_addresses = True
    url = f"http://127.0.0.1:{page_server.port}/page"
    r = await media_env.client.get(f"{V1}/preview_url", params={"url": url}, headers=media_env.auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["og:title"] == "The Title"
    assert body["og:description"] == "A page about things"
    assert body["og:site_name"] == "Example"
    assert body["og:image:type"] == "image/png"
    assert (body["og:image:width"], body["og:image:height"]) == (48, 24)
    assert body["og:image"].startswith(f"mxc://{SERVER_NAME}/")
    image = await media_env.client.get(f"{V1}/download/{SERVER_NAME}/{body['og:image'].split('/')[-1]}",
                                       headers=media_env.auth())
    assert image.status_code == 200 and len(image.content) == body["matrix:image:size"]
    assert page_server.hits == ["/page", "/logo.png"]
    # Cached: asked again (also on the deprecated path), the page is not fetched again.
    r = await media_env.client.get("/_matrix/media/v3/preview_url", params={"url": url}, headers=media_env.auth())
    assert r.json() == body
    assert page_server.hits == ["/page", "/logo.png"]
    # Redirects are followed; <title> and the description meta tag stand in for og: tags.
    r = await media_env.client.get(f"{V1}/preview_url", params={"url": f"http://127.0.0.1:{page_server.port}/moved"},
                                   headers=media_env.auth())
    assert r.json() == {"og:title": "Bare", "og:description": "Desc"}


async def test_bad_and_disabled_previews(media_env: MediaEnv) -> None:
    r = await media_env.client.get(f"{V1}/preview_url", params={"url": "file:///etc/passwd"},
                                   headers=media_env.auth())
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    r = await media_env.client.get(f"{V1}/preview_url", headers=media_env.auth())
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
    media_env.mediaapi.config.media.url_preview_enabled = False
    r = await media_env.client.get(f"{V1}/preview_url", params={"url": "http://example.com/"},
                                   headers=media_env.auth())
    assert r.status_code == 404 and r.json()["errcode"] == "M_UNRECOGNIZED"
