"""Fixtures of the user API's component tests: the real component on a fresh
database, reached through either binding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from common.config import Config
from userapi.api import UserAPI
from userapi.component import UserAPIComponent, open_userapi
from userapi.grpc.client import GrpcUserAPIClient
from userapi.grpc.server import serve_grpc
from userapi.internal.passwords import ScryptParams

SERVER_NAME = "test.myelin"
# Real scrypt, at a cost that keeps the suite fast.
CHEAP_SCRYPT = ScryptParams(n=2**10)


def make_config(tmp_path: Path, postgres_url: str = "") -> Config:
    return Config(server_name=SERVER_NAME, data_dir=tmp_path, signing_key_path=tmp_path / "signing.key",
                  postgres_url=postgres_url)


@pytest.fixture
async def userapi_component(tmp_path: Path) -> AsyncIterator[UserAPIComponent]:
    component = await open_userapi(make_config(tmp_path), password_params=CHEAP_SCRYPT)
    try:
        yield component
    finally:
        await component.close()


@pytest.fixture(params=["inprocess", "grpc"])
async def userapi(request: pytest.FixtureRequest, userapi_component: UserAPIComponent
                  ) -> AsyncIterator[UserAPI]:
    if request.param == "inprocess":
        yield userapi_component.api
        return
    server, port = await serve_grpc(userapi_component.api, "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    client = GrpcUserAPIClient(channel)
    try:
        yield client
    finally:
        await client.close()
        await channel.close()
        await server.stop(None)
