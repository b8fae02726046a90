"""The client API with the user API in another process: the gRPC binding
(port 0) under the account routes, as the split deployment runs them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from clientapi.component import build, open_clientapi_database
from common.http import make_app, serve_app
from matrixlib.signing import generate_signing_key
from tests.component.clientapi.conftest import CHEAP_SCRYPT, SERVER_NAME, make_config
from tests.fakes.roomserver import FakeRoomserver
from userapi.component import open_userapi
from userapi.grpc.client import GrpcUserAPIClient
from userapi.grpc.server import serve_grpc

V3 = "/_matrix/client/v3"


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = make_config(tmp_path)
    userapi = await open_userapi(config, password_params=CHEAP_SCRYPT)
    server, port = await serve_grpc(userapi.api, "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    database = await open_clientapi_database(config)
    clientapi = build(config, database, None, FakeRoomserver(), GrpcUserAPIClient(channel),
                      generate_signing_key("k"))
    serving = await serve_app(make_app("clientapi_grpc_userapi", [clientapi.blueprint]), "127.0.0.1:0")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{serving.port}") as client:
            yield client
    finally:
        await serving.stop()
        await clientapi.close()
        await database.close()
        await channel.close()
        await server.stop(None)
        await userapi.close()


async def test_accounts_over_grpc(http: httpx.AsyncClient) -> None:
    registered = await http.post(f"{V3}/register", json={
        "username": "gale", "password": "pw", "auth": {"type": "m.login.dummy"}})
    assert registered.status_code == 200, registered.text
    headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
    taken = await http.post(f"{V3}/register", json={"username": "gale", "password": "pw"})
    assert (taken.status_code, taken.json()["errcode"]) == (400, "M_USER_IN_USE")
    invalid = await http.get(f"{V3}/register/available", params={"username": "_x"})
    assert (invalid.status_code, invalid.json()["errcode"]) == (400, "M_INVALID_USERNAME")
    wrong = await http.post(f"{V3}/login", json={"type": "m.login.password", "user": "gale", "password": "x"})
    assert (wrong.status_code, wrong.json()["errcode"]) == (403, "M_FORBIDDEN")
    unknown = await http.get(f"{V3}/account/whoami", headers={"Authorization": "Bearer nope"})
    assert (unknown.status_code, unknown.json()["errcode"], unknown.json()["soft_logout"]) == (
        401, "M_UNKNOWN_TOKEN", False)
    put = await http.put(f"{V3}/profile/@gale:{SERVER_NAME}/displayname", json={"displayname": "Gale"},
                         headers=headers)
    assert put.status_code == 200, put.text
    # Only the display name changed (optional fields survive the wire).
    profile = await http.get(f"{V3}/profile/@gale:{SERVER_NAME}")
    assert profile.json() == {"displayname": "Gale"}
    missing = await http.get(f"{V3}/profile/@ghost:{SERVER_NAME}")
    assert (missing.status_code, missing.json()["errcode"]) == (404, "M_NOT_FOUND")
    logout = await http.post(f"{V3}/logout", headers=headers)
    assert logout.status_code == 200
    assert (await http.get(f"{V3}/account/whoami", headers=headers)).status_code == 401


@pytest.fixture
async def two_instances(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two client API instances (own databases, own user API channels and
    token caches) in front of one user API, as behind a load balancer."""
    config = make_config(tmp_path)
    userapi = await open_userapi(config, password_params=CHEAP_SCRYPT)
    server, port = await serve_grpc(userapi.api, "127.0.0.1:0")
    database = await open_clientapi_database(config)
    channels, clients, servings = [], [], []
    try:
        for index in range(2):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            channels.append(channel)
            userapi_client = GrpcUserAPIClient(channel)
            clients.append(userapi_client)
            clientapi = build(config, database, None, FakeRoomserver(), userapi_client,
                              generate_signing_key("k"), blueprint_name=f"clientapi{index}")
            servings.append(await serve_app(make_app(f"clientapi_instance_{index}", [clientapi.blueprint]),
                                            "127.0.0.1:0"))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{servings[0].port}") as one, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{servings[1].port}") as two:
            yield one, two
    finally:
        for serving in servings:
            await serving.stop()
        for client in clients:
            await client.close()
        for channel in channels:
            await channel.close()
        await database.close()
        await server.stop(None)
        await userapi.close()


async def test_a_logout_on_one_instance_is_refused_by_both_at_once(
        two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    one, two = two_instances
    registered = await one.post(f"{V3}/register", json={
        "username": "ida", "password": "pw", "auth": {"type": "m.login.dummy"}})
    assert registered.status_code == 200, registered.text
    headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
    # Both instances have looked the token up (and remember it) a few times.
    for _ in range(20):
        for instance in (one, two):
            assert (await instance.get(f"{V3}/account/whoami", headers=headers)).status_code == 200
        await asyncio.sleep(0.01)
    assert (await one.post(f"{V3}/logout", headers=headers)).status_code == 200
    for instance in (one, two):
        gone = await instance.get(f"{V3}/account/whoami", headers=headers)
        assert (gone.status_code, gone.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
