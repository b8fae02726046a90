"""common.http, per request: the request-lifecycle signals Sanic dispatches
for every request (``http.*``) are answered at once when the app has no
handler for any of them, and dispatched as before when it has one; JSON
response bodies (orjson, json.dumps for what orjson refuses)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.http import json_response, make_app, serve_app


async def hello(request: Request) -> HTTPResponse:
    return json_response({"hello": "world"})


def _app(name: str) -> Any:
    blueprint = Blueprint(f"{name}_bp")
    blueprint.add_route(hello, "/hello", methods=["GET"], name="hello")
    return make_app(name, [blueprint])


async def _get(app: Any, *paths: str) -> list[httpx.Response]:
    serving = await serve_app(app, "127.0.0.1:0")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{serving.port}") as client:
            return [await client.get(path) for path in paths]
    finally:
        await serving.stop()


async def test_unhandled_http_signals_are_not_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app("signals_unhandled")
    looked_up: list[str] = []
    original_get = app.signal_router.get

    def recording_get(event: Any, condition: Any = None) -> Any:
        looked_up.append(str(event))
        return original_get(event, condition=condition)

    monkeypatch.setattr(app.signal_router, "get", recording_get)
    response, missing = await _get(app, "/hello", "/nowhere")
    assert response.status_code == 200
    assert response.json() == {"hello": "world"}
    assert missing.status_code == 404
    assert missing.json()["errcode"] == "M_UNRECOGNIZED"
    assert [event for event in looked_up if event.startswith("http.")] == []


async def test_a_handled_http_signal_is_still_dispatched() -> None:
    app = _app("signals_handled")
    seen: list[str] = []

    async def on_handle(request: Request, **_: Any) -> None:
        seen.append(request.path)

    app.signal("http.lifecycle.handle")(on_handle)

    [response] = await _get(app, "/hello")
    assert response.status_code == 200
    assert seen == ["/hello"]


@pytest.mark.parametrize("body", [
    {"event_id": "$abc", "nested": {"list": [1, True, None, "日本語"]}},
    {"huge": 2**70},
    {1: "integer key"},
])
def test_json_response_bodies(body: Any) -> None:
    response = json_response(body)
    assert response.body is not None
    assert json.loads(response.body) == json.loads(json.dumps(body))
    assert response.content_type == "application/json"
