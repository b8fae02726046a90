"""Typing, receipts, read markers and to-device messages through the real
HTTP routes: what each writes to the client API's EDU topics, and the
requests refused (another user, a non-member, bad bodies)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from google.protobuf.message import Message
from myelin.clientapi.v1 import edu_log_pb2
from myelin.userapi.v1 import userapi_pb2 as ua_pb

from clientapi.component import build, open_clientapi_database
from common.http import make_app, serve_app
from common.logs.embedded import EmbeddedLog
from common.topics import CLIENTAPI_RECEIPT, CLIENTAPI_SEND_TO_DEVICE, CLIENTAPI_TYPING, Topic
from matrixlib.signing import generate_signing_key
from tests.component.clientapi.conftest import CHEAP_SCRYPT, Harness, User, make_config
from tests.fakes.roomserver import FakeRoomserver
from userapi.component import open_userapi

V3 = "/_matrix/client/v3"


class EduHarness(Harness):
    log: EmbeddedLog

    async def records(self, topic: Topic) -> list[Any]:
        """Every record on ``topic`` so far, parsed."""
        consumer = await self.log.consumer(f"test-{uuid.uuid4().hex}", [topic.name])
        try:
            found: list[Message] = []
            while True:
                batch = await consumer.fetch(timeout=0.2)
                if not batch:
                    return found
                found += [topic.message.FromString(r.value) for r in batch]
        finally:
            await consumer.close()

    async def joined_room(self, owner: User, *members: User) -> str:
        room_id = await self.create_room(owner, preset="public_chat")
        for member in members:
            response = await self.http.post(f"{V3}/join/{quote(room_id, safe='')}", json={},
                                            headers=member.headers)
            assert response.status_code == 200, response.text
        return room_id


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[EduHarness]:
    config = make_config(tmp_path)
    userapi = await open_userapi(config, password_params=CHEAP_SCRYPT)
    database = await open_clientapi_database(config)
    log = EmbeddedLog(tmp_path / "log", partitions=2)
    await log.start()
    clientapi = build(config, database, log, FakeRoomserver(), userapi.api, generate_signing_key("test"))
    serving = await serve_app(make_app(f"clientapi_edu_{uuid.uuid4().hex}", [clientapi.blueprint]), "127.0.0.1:0")
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{serving.port}", timeout=30)
    found = EduHarness(http, clientapi, clientapi.services.roomserver)
    found.log = log
    try:
        yield found
    finally:
        await http.aclose()
        await serving.stop()
        await clientapi.close()
        await log.close()
        await database.close()
        await userapi.close()


def room_path(room_id: str, rest: str) -> str:
    return f"{V3}/rooms/{quote(room_id, safe='')}/{rest}"


async def send_message(harness: Harness, user: User, room_id: str, body: str) -> str:
    response = await harness.send(user, room_id, {"msgtype": "m.text", "body": body}, uuid.uuid4().hex)
    assert response.status_code == 200, response.text
    event_id: str = response.json()["event_id"]
    return event_id


# -- typing -------------------------------------------------------------------------------


async def test_typing_goes_on_the_typing_topic(harness: EduHarness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.joined_room(alice)
    path = room_path(room_id, f"typing/{quote(alice.user_id, safe='')}")
    response = await harness.http.put(path, json={"typing": True, "timeout": 500_000}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {}
    response = await harness.http.put(path, json={"typing": False}, headers=alice.headers)
    assert response.status_code == 200, response.text
    records = await harness.records(CLIENTAPI_TYPING)
    assert [(r.room_id, r.user_id, r.typing) for r in records] == [
        (room_id, alice.user_id, True), (room_id, alice.user_id, False)]
    assert records[0].timeout_ms == 120_000  # capped
    assert records[0].sent_at_ms > 0


async def test_typing_refused_for_others_non_members_and_bad_bodies(harness: EduHarness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.joined_room(alice)
    alice_path = room_path(room_id, f"typing/{quote(alice.user_id, safe='')}")
    bob_path = room_path(room_id, f"typing/{quote(bob.user_id, safe='')}")

    response = await harness.http.put(alice_path, json={"typing": True}, headers=bob.headers)
    assert response.status_code == 403 and response.json()["errcode"] == "M_FORBIDDEN"
    response = await harness.http.put(bob_path, json={"typing": True}, headers=bob.headers)
    assert response.status_code == 403 and response.json()["errcode"] == "M_FORBIDDEN"
    for body, errcode in (({}, "M_MISSING_PARAM"), ({"typing": "yes"}, "M_BAD_JSON"),
                          ({"typing": True, "timeout": -1}, "M_BAD_JSON"),
                          ({"typing": True, "timeout": "30"}, "M_BAD_JSON")):
        response = await harness.http.put(alice_path, json=body, headers=alice.headers)
        assert response.status_code == 400 and response.json()["errcode"] == errcode, body
    response = await harness.http.put(alice_path, content=b"not json", headers=alice.headers)
    assert response.status_code == 400 and response.json()["errcode"] == "M_NOT_JSON"
    assert await harness.records(CLIENTAPI_TYPING) == []


# -- receipts and read markers ----------------------------------------------------------------


async def test_receipts_go_on_the_receipt_topic(harness: EduHarness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.joined_room(alice)
    event_id = await send_message(harness, alice, room_id, "hello")
    for receipt_type, body in (("m.read", {}), ("m.read.private", {}), ("m.read", {"thread_id": "main"})):
        response = await harness.http.post(room_path(room_id, f"receipt/{receipt_type}/{quote(event_id)}"),
                                           json=body, headers=alice.headers)
        assert response.status_code == 200, response.text
    records = await harness.records(CLIENTAPI_RECEIPT)
    assert [(r.room_id, r.user_id, r.receipt_type, r.event_id, r.thread_id) for r in records] == [
        (room_id, alice.user_id, "m.read", event_id, ""),
        (room_id, alice.user_id, "m.read.private", event_id, ""),
        (room_id, alice.user_id, "m.read", event_id, "main")]
    assert all(r.ts_ms > 0 for r in records)


async def test_fully_read_is_room_account_data(harness: EduHarness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.joined_room(alice)
    first = await send_message(harness, alice, room_id, "one")
    second = await send_message(harness, alice, room_id, "two")
    response = await harness.http.post(room_path(room_id, "read_markers"),
                                       json={"m.fully_read": first, "m.read": second}, headers=alice.headers)
    assert response.status_code == 200, response.text
    records = await harness.records(CLIENTAPI_RECEIPT)
    assert [(r.receipt_type, r.event_id) for r in records] == [("m.read", second)]
    response = await harness.http.post(room_path(room_id, f"receipt/m.fully_read/{quote(second)}"), json={},
                                       headers=alice.headers)
    assert response.status_code == 200, response.text
    stored = await harness.clientapi.services.userapi.query_account_data(
        ua_pb.QueryAccountDataRequest(user_id=alice.user_id, room_id=room_id, type="m.fully_read"))
    assert [json.loads(a.content_json) for a in stored.account_data] == [{"event_id": second}]
    assert len(await harness.records(CLIENTAPI_RECEIPT)) == 1
    response = await harness.http.get(
        f"{V3}/user/{quote(alice.user_id, safe='')}/rooms/{quote(room_id, safe='')}/account_data/m.fully_read",
        headers=alice.headers)
    assert response.status_code == 200 and response.json() == {"event_id": second}


async def test_receipts_refused(harness: EduHarness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.joined_room(alice)
    other_room = await harness.joined_room(alice)
    event_id = await send_message(harness, alice, room_id, "hello")
    elsewhere = await send_message(harness, alice, other_room, "elsewhere")

    async def post(user: User, rest: str, body: Any, room: str = room_id) -> httpx.Response:
        return await harness.http.post(room_path(room, rest), json=body, headers=user.headers)

    cases: list[tuple[User, str, Any, int, str]] = [
        (alice, f"receipt/m.unknown/{event_id}", {}, 400, "M_INVALID_PARAM"),
        (alice, f"receipt/m.read/{event_id}", {"thread_id": ""}, 400, "M_INVALID_PARAM"),
        (alice, f"receipt/m.read/{event_id}", {"thread_id": 7}, 400, "M_INVALID_PARAM"),
        (alice, f"receipt/m.fully_read/{event_id}", {"thread_id": "main"}, 400, "M_INVALID_PARAM"),
        (alice, f"receipt/m.read/{elsewhere}", {}, 404, "M_NOT_FOUND"),
        (alice, "receipt/m.read/$unknown", {}, 404, "M_NOT_FOUND"),
        (bob, f"receipt/m.read/{event_id}", {}, 403, "M_FORBIDDEN"),
        (alice, "read_markers", {"m.fully_read": 5}, 400, "M_BAD_JSON"),
        (alice, "read_markers", {"m.fully_read": elsewhere}, 404, "M_NOT_FOUND"),
        (bob, "read_markers", {"m.read": event_id}, 403, "M_FORBIDDEN"),
    ]
    for user, rest, body, status, errcode in cases:
        response = await post(user, rest.replace("$", "%24"), body)
        assert (response.status_code, response.json().get("errcode")) == (status, errcode), (rest, body)
    assert await harness.records(CLIENTAPI_RECEIPT) == []


# -- to-device --------------------------------------------------------------------------------


async def login(harness: Harness, user: User, device_id: str) -> User:
    response = await harness.http.post(f"{V3}/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": "password1", "device_id": device_id})
    assert response.status_code == 200, response.text
    return User(user.user_id, device_id, response.json()["access_token"])


async def test_send_to_device_per_device_all_devices_and_idempotent(harness: EduHarness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    await login(harness, bob, "BOB2")
    body = {"messages": {
        alice.user_id: {alice.device_id: {"n": 1}, "NOSUCHDEVICE": {"n": 0}},
        bob.user_id: {"*": {"n": 2}},
        "@remote:elsewhere.example": {"DEV": {"n": 3}},
        "@nobody:client.test": {"*": {"n": 4}},
    }}
    path = f"{V3}/sendToDevice/m.test/txn1"
    for _ in range(2):
        response = await harness.http.put(path, json=body, headers=alice.headers)
        assert response.status_code == 200, response.text
        assert response.json() == {}
    records = await harness.records(CLIENTAPI_SEND_TO_DEVICE)
    got = sorted((r.target_user_id, r.target_device_id, json.loads(r.content_json)["n"]) for r in records)
    # A remote user's message is written as named, for the federation sender.
    assert got == sorted([(alice.user_id, alice.device_id, 1), (bob.user_id, bob.device_id, 2),
                          (bob.user_id, "BOB2", 2), ("@remote:elsewhere.example", "DEV", 3)])
    assert {(r.sender, r.sender_device_id, r.event_type) for r in records} == {
        (alice.user_id, alice.device_id, "m.test")}
    assert len({r.message_id for r in records}) == 1
    # Another transaction is another message.
    response = await harness.http.put(f"{V3}/sendToDevice/m.test/txn2",
                                      json={"messages": {bob.user_id: {bob.device_id: {}}}}, headers=alice.headers)
    assert response.status_code == 200
    records = await harness.records(CLIENTAPI_SEND_TO_DEVICE)
    assert len(records) == 5 and len({r.message_id for r in records}) == 2
    assert isinstance(records[0], edu_log_pb2.ToDeviceMessage)


async def test_send_to_device_bad_bodies(harness: EduHarness) -> None:
    alice = await harness.register("alice")
    for body, errcode in (({}, "M_MISSING_PARAM"), ({"messages": []}, "M_BAD_JSON"),
                          ({"messages": {alice.user_id: "x"}}, "M_BAD_JSON"),
                          ({"messages": {alice.user_id: {"D": 1}}}, "M_BAD_JSON")):
        response = await harness.http.put(f"{V3}/sendToDevice/m.test/{uuid.uuid4().hex}", json=body,
                                          headers=alice.headers)
        assert response.status_code == 400 and response.json()["errcode"] == errcode, body
    assert await harness.records(CLIENTAPI_SEND_TO_DEVICE) == []
