"""Inbound federation requests are authenticated with X-Matrix: the real
component's blueprint (plus a test route) served over HTTP, the origin's
keys fetched from a fake key server over TLS."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sanic import Request
from sanic.response import HTTPResponse

from common.http import ServingApp, json_response, make_app, serve_app
from federationapi.component import FederationAPI, open_federationapi
from federationapi.keyring import now_ms
from matrixlib.federation_auth import sign_request
from matrixlib.signing import SigningKey, generate_signing_key, verify_json
from tests.component.federationapi.conftest import (
    DAY_MS,
    OUR_KEY,
    OUR_NAME,
    FakeKeyServer,
    Harness,
    make_config,
)

ECHO = "/_matrix/federation/v1/test_echo/x%20y?a=1&b=%2F"


@dataclass
class Front:
    http: httpx.AsyncClient
    origin: FakeKeyServer
    component: FederationAPI

    async def call(self, method: str, uri: str = ECHO, content: Any = None, *, key: SigningKey | None = None,
                   destination: str = OUR_NAME, sign_content: Any = "same",
                   authorization: str | None = None) -> httpx.Response:
        if authorization is None:
            signed = content if sign_content == "same" else sign_content
            authorization = sign_request(key or self.origin.key, method=method, uri=uri,
                                         origin=self.origin.server_name, destination=destination, content=signed)
        body = None if content is None else json.dumps(content).encode()
        return await self.http.request(method, uri, content=body, headers={"Authorization": authorization})


@pytest.fixture
async def front(harness: Harness) -> AsyncIterator[Front]:
    # The component runs on the real clock.
    origin = FakeKeyServer(valid_until_ts=now_ms() + DAY_MS)
    await harness.start(origin)
    component = await open_federationapi(make_config(harness.tmp_path), OUR_KEY, client=harness.client)
    blueprint = component.make_blueprint()

    async def echo(request: Request, rest: str) -> HTTPResponse:
        return json_response({"origin": request.ctx.origin, "rest": rest})

    blueprint.add_route(echo, "/_matrix/federation/v1/test_echo/<rest>", methods=["GET", "PUT"])
    serving: ServingApp = await serve_app(make_app(f"front_{uuid.uuid4().hex[:8]}", [blueprint]), "127.0.0.1:0")
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{serving.port}")
    try:
        yield Front(http, origin, component)
    finally:
        await http.aclose()
        await serving.stop()
        await component.close()


async def test_a_signed_request_is_let_through_with_its_origin(front: Front) -> None:
    r = await front.call("GET")
    assert r.status_code == 200, r.text
    assert r.json()["origin"] == front.origin.server_name
    r = await front.call("PUT", content={"pdus": [], "n": 1})
    assert r.status_code == 200, r.text


def assert_unauthorized(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_UNAUTHORIZED"


async def test_no_authorization_is_401(front: Front) -> None:
    assert_unauthorized(await front.http.get(ECHO))
    assert_unauthorized(await front.call("GET", authorization="Bearer sometoken"))


async def test_malformed_header_is_401(front: Front) -> None:
    assert_unauthorized(await front.call("GET", authorization='X-Matrix origin="a.example",key="ed25519:k"'))
    assert_unauthorized(await front.call("GET", authorization='X-Matrix origin="a.example",key="ed25519:k",sig="s'))


async def test_wrong_key_is_401(front: Front) -> None:
    # A key ID the origin has, with another key's signature.
    assert_unauthorized(await front.call("GET", key=generate_signing_key(front.origin.key.version)))
    # A key ID the origin does not have.
    assert_unauthorized(await front.call("GET", key=generate_signing_key("nope")))


async def test_wrong_destination_is_401(front: Front) -> None:
    assert_unauthorized(await front.call("GET", destination="someone.else"))


async def test_tampered_body_is_401(front: Front) -> None:
    assert_unauthorized(await front.call("PUT", content={"n": 2}, sign_content={"n": 1}))


async def test_signature_over_another_path_is_401(front: Front) -> None:
    auth = sign_request(front.origin.key, method="GET", uri="/_matrix/federation/v1/test_echo/other",
                        origin=front.origin.server_name, destination=OUR_NAME)
    assert_unauthorized(await front.call("GET", authorization=auth))


async def test_unreachable_origin_is_401(front: Front) -> None:
    auth = sign_request(front.origin.key, method="GET", uri=ECHO, origin="localhost:1", destination=OUR_NAME)
    assert_unauthorized(await front.call("GET", authorization=auth))


async def test_version_and_keys_need_no_authentication(front: Front) -> None:
    r = await front.http.get("/_matrix/federation/v1/version")
    assert r.status_code == 200
    assert r.json()["server"]["name"] == "Myelin"
    r = await front.http.get("/_matrix/key/v2/server")
    assert r.status_code == 200
    verify_json(r.json(), OUR_NAME, OUR_KEY.key_id, OUR_KEY.verify_key)


async def test_notary_serves_cached_keys_re_signed(front: Front) -> None:
    # The origin's keys are fetched on its first request, then served by our notary API.
    assert (await front.call("GET")).status_code == 200
    r = await front.http.post("/_matrix/key/v2/query",
                              json={"server_keys": {front.origin.server_name: {front.origin.key.key_id: {}}}})
    [answer] = r.json()["server_keys"]
    verify_json(answer, OUR_NAME, OUR_KEY.key_id, OUR_KEY.verify_key)
    verify_json(answer, front.origin.server_name, front.origin.key.key_id, front.origin.key.verify_key)
    assert front.origin.requests == 1
    r = await front.http.get(f"/_matrix/key/v2/query/{OUR_NAME}")
    [own] = r.json()["server_keys"]
    verify_json(own, OUR_NAME, OUR_KEY.key_id, OUR_KEY.verify_key)
    r = await front.http.post("/_matrix/key/v2/query", json={"server_keys": {}})
    assert r.json() == {"server_keys": []}
    r = await front.http.post("/_matrix/key/v2/query", json={"nope": 1})
    assert r.status_code == 400


async def test_a_body_that_is_not_json_is_400(front: Front) -> None:
    auth = sign_request(front.origin.key, method="PUT", uri=ECHO, origin=front.origin.server_name,
                        destination=OUR_NAME, content={"a": 1})
    for body in (b"not json", b'{"a": NaN}'):
        r = await front.http.put(ECHO, content=body, headers={"Authorization": auth})
        assert r.status_code == 400, r.text
        assert r.json()["errcode"] == "M_NOT_JSON"
