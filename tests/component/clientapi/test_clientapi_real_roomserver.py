"""The client API against the real room server (embedded log, SQLite):
createRoom, membership, send and state end to end, in process and over
the room server's gRPC binding."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from common.config import Config
from common.logs import open_log
from matrixlib.signing import generate_signing_key
from roomserver.api import ClientRoomserverAPI
from roomserver.component import open_roomserver
from roomserver.grpc.client import GrpcRoomserverClient, roomserver_channel
from roomserver.grpc.server import serve_grpc
from tests.component.clientapi.conftest import SERVER_NAME, Harness, HarnessFactory

V3 = "/_matrix/client/v3"


@pytest.fixture(params=["inprocess", "grpc"])
async def real_roomserver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientRoomserverAPI]:
    directory = tmp_path / "roomserver"
    config = Config(server_name=SERVER_NAME, data_dir=directory, signing_key_path=directory / "key",
                    input_timeout_seconds=20.0)
    log = open_log(None, directory / "log", "clientapi-test")
    await log.start()
    component = await open_roomserver(config, log, generate_signing_key("rs"))
    task = asyncio.create_task(component.run())
    try:
        await asyncio.wait_for(component.ready.wait(), 10)
        if request.param == "inprocess":
            yield component.api
        else:
            server, port = await serve_grpc(component.api, "127.0.0.1:0")
            channel: grpc.aio.Channel = roomserver_channel(f"127.0.0.1:{port}")
            try:
                yield GrpcRoomserverClient(channel)
            finally:
                await channel.close()
                await server.stop(None)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await component.close()
        await log.close()


@pytest.fixture
async def harness(make_harness: HarnessFactory, real_roomserver: ClientRoomserverAPI) -> Harness:
    return await make_harness(roomserver=real_roomserver)


async def state_of(harness: Harness, headers: dict[str, str], room_id: str, path: str) -> Any:
    response = await harness.http.get(f"{V3}/rooms/{room_id}/state/{path}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("version", ["1", "10", "12"])
async def test_create_send_state(harness: Harness, version: str) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice, room_version=version, preset="public_chat", name="Real",
                                        topic="rooms", initial_state=[
                                            {"type": "org.example.x", "state_key": "", "content": {"a": 1}}])
    assert (await state_of(harness, alice.headers, room_id, "m.room.name")) == {"name": "Real"}
    assert (await state_of(harness, alice.headers, room_id, "org.example.x")) == {"a": 1}
    first = await harness.send(alice, room_id, {"msgtype": "m.text", "body": "hello"}, "t1")
    assert first.status_code == 200, first.text
    again = await harness.send(alice, room_id, {"msgtype": "m.text", "body": "hello"}, "t1")
    assert again.json() == first.json()
    response = await harness.http.put(f"{V3}/rooms/{room_id}/state/m.room.topic", json={"topic": "changed"},
                                      headers=alice.headers)
    assert response.status_code == 200, response.text
    assert (await state_of(harness, alice.headers, room_id, "m.room.topic")) == {"topic": "changed"}
    response = await harness.http.get(f"{V3}/rooms/{room_id}/state", headers=alice.headers)
    types = {e["type"] for e in response.json()}
    assert {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules",
            "m.room.name", "m.room.topic", "org.example.x"} <= types


async def test_membership_and_refusals(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    carol = await harness.register("carol")
    room_id = await harness.create_room(alice, invite=[bob.user_id])
    member = await state_of(harness, alice.headers, room_id, f"m.room.member/{bob.user_id}")
    assert member["membership"] == "invite"
    # Carol was not invited to this private room.
    response = await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=carol.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    response = await harness.send(carol, room_id, {"body": "x"}, "c1")
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    response = await harness.http.post(f"{V3}/join/{room_id}", json={}, headers=bob.headers)
    assert response.status_code == 200, response.text
    response = await harness.send(bob, room_id, {"msgtype": "m.text", "body": "hi"}, "b1")
    assert response.status_code == 200, response.text
    response = await harness.http.get(f"{V3}/joined_rooms", headers=bob.headers)
    assert response.json() == {"joined_rooms": [room_id]}
    # Bob (power 0) may not change the room's name (50).
    response = await harness.http.put(f"{V3}/rooms/{room_id}/state/m.room.name", json={"name": "mine"},
                                      headers=bob.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    response = await harness.http.post(f"{V3}/rooms/{room_id}/leave", json={}, headers=bob.headers)
    assert response.status_code == 200
    response = await harness.send(bob, room_id, {"body": "gone"}, "b2")
    assert response.status_code == 403
    response = await harness.http.get(f"{V3}/rooms/{room_id}/state", headers=bob.headers)
    assert response.status_code == 403
