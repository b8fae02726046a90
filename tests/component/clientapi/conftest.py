"""Fixtures of the client API's component tests: the real routes on a real
Sanic server (port 0), the real user API, a fake room server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from clientapi.component import ClientAPI, build, open_clientapi_database
from common.config import Config, RateLimit, RateLimits, Registration
from common.http import make_app, serve_app
from matrixlib.signing import generate_signing_key
from roomserver.api import ClientRoomserverAPI
from tests.fakes.roomserver import FakeRoomserver
from userapi.component import open_userapi
from userapi.internal.passwords import ScryptParams

SERVER_NAME = "client.test"
CHEAP_SCRYPT = ScryptParams(n=2**10)


def make_config(tmp_path: Path, *, rate_limits: RateLimits | None = None, registration_open: bool = True,
                default_room_version: str = "12") -> Config:
    return Config(server_name=SERVER_NAME, data_dir=tmp_path, signing_key_path=tmp_path / "signing.key",
                  registration=Registration(open=registration_open),
                  rate_limits=rate_limits or RateLimits(enabled=False),
                  default_room_version=default_room_version)


@dataclass
class User:
    user_id: str
    device_id: str
    access_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


class Harness:
    def __init__(self, http: httpx.AsyncClient, clientapi: ClientAPI, roomserver: ClientRoomserverAPI) -> None:
        self.http = http
        self.clientapi = clientapi
        self.roomserver = roomserver
        self._count = 0

    async def register(self, localpart: str | None = None, password: str = "password1") -> User:
        self._count += 1
        name = localpart or f"user{self._count}"
        response = await self.http.post("/_matrix/client/v3/register", json={
            "username": name, "password": password, "auth": {"type": "m.login.dummy"}})
        assert response.status_code == 200, response.text
        body = response.json()
        return User(body["user_id"], body["device_id"], body["access_token"])

    async def create_room(self, user: User, **request: Any) -> str:
        response = await self.http.post("/_matrix/client/v3/createRoom", json=request, headers=user.headers)
        assert response.status_code == 200, response.text
        room_id: str = response.json()["room_id"]
        return room_id

    async def send(self, user: User, room_id: str, content: dict[str, Any], txn_id: str,
                   event_type: str = "m.room.message") -> httpx.Response:
        return await self.http.put(f"/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}",
                                   json=content, headers=user.headers)


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[HarnessFactory]:
    """Builds a harness; keyword arguments go to ``make_config``, and
    ``roomserver`` replaces the fake."""
    cleanups: list[Callable[[], Awaitable[Any]]] = []

    async def factory(roomserver: ClientRoomserverAPI | None = None, **config_args: Any) -> Harness:
        directory = tmp_path / uuid.uuid4().hex[:8]
        directory.mkdir()
        config = make_config(directory, **config_args)
        userapi = await open_userapi(config, password_params=CHEAP_SCRYPT)
        cleanups.append(userapi.close)
        database = await open_clientapi_database(config)
        cleanups.append(database.close)
        rs = roomserver if roomserver is not None else FakeRoomserver()
        clientapi = build(config, database, None, rs, userapi.api, generate_signing_key("test"))
        cleanups.append(clientapi.close)
        app = make_app(f"clientapi_test_{uuid.uuid4().hex}", [clientapi.blueprint])
        serving = await serve_app(app, "127.0.0.1:0")
        cleanups.append(serving.stop)
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{serving.port}", timeout=30)
        cleanups.append(http.aclose)
        return Harness(http, clientapi, rs)

    try:
        yield factory
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()


@pytest.fixture
async def harness(make_harness: HarnessFactory) -> Harness:
    return await make_harness()


__all__ = ["SERVER_NAME", "Harness", "HarnessFactory", "RateLimit", "RateLimits", "User"]
