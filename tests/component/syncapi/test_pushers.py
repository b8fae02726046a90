"""Delivery of notifications to HTTP pushers: a fake push gateway (a Sanic
app on a free port) receives POST /_matrix/push/v1/notify; a 500 is retried
with backoff; a rejected pushkey deletes the pusher."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from common.http import ServingApp, make_app, serve_app
from syncapi.internal.pushers import PusherAPI
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, Env, wait_until

NOTIFY_PATH = "/_matrix/push/v1/notify"


class FakeGateway:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        # Status codes to answer with, in turn; then 200.
        self.failures: list[int] = []
        self.rejected: list[str] = []
        self.serving: ServingApp | None = None

    async def notify(self, request: Request) -> HTTPResponse:
        self.received.append(json.loads(request.body))
        if self.failures:
            return json_response({"error": "down"}, status=self.failures.pop(0))
        return json_response({"rejected": self.rejected})

    @property
    def url(self) -> str:
        assert self.serving is not None
        return f"http://127.0.0.1:{self.serving.port}{NOTIFY_PATH}"


class FakePushers:
    def __init__(self) -> None:
        self.pushers: dict[str, list[ua_pb.Pusher]] = {}
        self.deleted: list[tuple[str, str, str]] = []
        self.queries = 0

    async def query_pushers(self, req: ua_pb.QueryPushersRequest) -> ua_pb.QueryPushersResponse:
        self.queries += 1
        return ua_pb.QueryPushersResponse(pushers=self.pushers.get(req.user_id, []))

    async def perform_pusher_set(self, req: ua_pb.PerformPusherSetRequest) -> ua_pb.PerformPusherSetResponse:
        assert req.pusher.kind == ""
        self.deleted.append((req.user_id, req.pusher.app_id, req.pusher.pushkey))
        self.pushers[req.user_id] = [p for p in self.pushers.get(req.user_id, [])
                                     if p.pushkey != req.pusher.pushkey]
        return ua_pb.PerformPusherSetResponse()


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    fake = FakeGateway()
    blueprint = Blueprint(f"push_gateway_{uuid.uuid4().hex}")
    blueprint.add_route(fake.notify, NOTIFY_PATH, methods=["POST"])
    fake.serving = await serve_app(make_app(f"push-gateway-{uuid.uuid4().hex}", [blueprint]), "127.0.0.1:0")
    try:
        yield fake
    finally:
        await fake.serving.stop()


def attach_pushers(env: Env, gateway: FakeGateway, **data: Any) -> FakePushers:
    pushers = FakePushers()
    assert isinstance(pushers, PusherAPI)
    pushers.pushers[ALICE] = [ua_pb.Pusher(
        kind="http", app_id="org.example.app", pushkey="key-1", app_display_name="App",
        device_display_name="Phone", lang="en", pushkey_ts=1234,
        data_json=json.dumps({"url": gateway.url, **data}).encode())]
    env.syncapi.pushers.userapi = pushers
    env.syncapi.pushers.initial_backoff = 0.05
    env.syncapi.pushers.pushers_ttl = 0.0  # the tests change the pushers as they go
    return pushers


async def one_to_one(env: Env) -> TestRoom:
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    return room


async def test_a_notification_reaches_the_gateway_after_a_500(env: Env, gateway: FakeGateway) -> None:
    attach_pushers(env, gateway)
    room = await one_to_one(env)
    gateway.failures = [500]
    message = room.message(BOB, "are you there?")
    await env.send(message)
    await wait_until(lambda: len(gateway.received) == 2)
    first, retried = gateway.received
    assert first == retried
    notification = retried["notification"]
    assert notification["event_id"] == message.event_id and notification["room_id"] == room.room_id
    assert notification["type"] == "m.room.message" and notification["sender"] == BOB
    assert notification["content"] == {"msgtype": "m.text", "body": "are you there?"}
    assert notification["counts"] == {"unread": 1}
    assert notification["prio"] == "high"
    assert notification["devices"] == [{"app_id": "org.example.app", "pushkey": "key-1", "pushkey_ts": 1234,
                                        "data": {}, "tweaks": {"sound": "default"}}]


async def test_event_id_only_and_a_rejected_pushkey(env: Env, gateway: FakeGateway) -> None:
    pushers = attach_pushers(env, gateway, format="event_id_only")
    room = await one_to_one(env)
    gateway.rejected = ["key-1"]
    message = room.message(BOB, "secret")
    await env.send(message)
    await wait_until(lambda: pushers.deleted == [(ALICE, "org.example.app", "key-1")])
    [received] = gateway.received
    assert "content" not in received["notification"] and "sender" not in received["notification"]
    assert received["notification"]["devices"][0]["data"] == {"format": "event_id_only"}
    # The pusher is gone: the next notification reaches only a pusher added since.
    gateway.rejected = []
    pushers.pushers[ALICE].append(ua_pb.Pusher(kind="http", app_id="org.example.app", pushkey="key-2",
                                               data_json=json.dumps({"url": gateway.url}).encode()))
    await env.send(room.message(BOB, "again"))
    await wait_until(lambda: len(gateway.received) == 2)
    assert [d["pushkey"] for d in gateway.received[1]["notification"]["devices"]] == ["key-2"]
    assert gateway.received[1]["notification"]["counts"] == {"unread": 2}


async def test_the_sender_and_users_without_pushers_get_nothing(env: Env, gateway: FakeGateway) -> None:
    attach_pushers(env, gateway)
    room = await one_to_one(env)
    await env.send(room.message(ALICE, "my own message"))
    await env.send(room.message(BOB, "for alice"))
    await wait_until(lambda: len(gateway.received) == 1)
    assert gateway.received[0]["notification"]["content"]["body"] == "for alice"


async def test_pushers_are_remembered_for_a_while(env: Env, gateway: FakeGateway) -> None:
    pushers = attach_pushers(env, gateway)
    env.syncapi.pushers.pushers_ttl = 60.0
    room = await one_to_one(env)
    await env.send(room.message(BOB, "one"))
    await env.send(room.message(BOB, "two"))
    await wait_until(lambda: len(gateway.received) == 2)
    assert pushers.queries == 1


async def test_users_known_to_have_no_pusher_are_not_queued(env: Env, gateway: FakeGateway,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pushers = attach_pushers(env, gateway)
    delivery = env.syncapi.pushers
    delivery.pushers_ttl = 60.0
    queued: list[str] = []
    put = delivery._queue.put_nowait

    def counting_put(item: Any) -> None:
        queued.append(item.user_id)
        put(item)

    monkeypatch.setattr(delivery._queue, "put_nowait", counting_put)
    room = await one_to_one(env)
    await env.send(room.message(ALICE, "first, for bob"))
    # Bob has no pusher: learnt by the worker that took his first notification.
    await wait_until(lambda: BOB in delivery._pushers)
    await env.send(room.message(ALICE, "second, for bob"))
    await env.send(room.message(BOB, "for alice"))
    await wait_until(lambda: len(gateway.received) == 1)
    assert gateway.received[0]["notification"]["content"]["body"] == "for alice"
    assert queued == [BOB, ALICE]
    assert pushers.queries == 2
