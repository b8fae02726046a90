"""Account data in /sync (global and per room, its own token position),
the push rules every client starts with, and ignored users: fed through the
user API's topic on the real embedded log."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from myelin.userapi.v1 import account_data_log_pb2
from myelin.userapi.v1 import userapi_pb2 as ua_pb

from common import errors
from common.topics import USERAPI_ACCOUNT_DATA
from syncapi.consumers.userapi import UserAPIConsumer
from syncapi.tokens import StreamToken
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, running_env, shared_room, wait_until


async def change(env: Env, user_id: str, data_type: str, content: dict[str, Any], room_id: str = "",
                 wait: bool = True) -> None:
    position = env.syncapi.notifier.stream_position("account_data")
    await env.log.append(USERAPI_ACCOUNT_DATA.name, user_id.encode(), account_data_log_pb2.AccountDataChange(
        user_id=user_id, room_id=room_id, type=data_type,
        content_json=json.dumps(content, separators=(",", ":")).encode()).SerializeToString())
    if wait:
        await wait_until(lambda: env.syncapi.notifier.stream_position("account_data") > position)


def global_data(body: dict[str, Any]) -> dict[str, Any]:
    return {e["type"]: e["content"] for e in body["account_data"]["events"]}


def room_data(body: dict[str, Any], room_id: str) -> dict[str, Any]:
    room = body["rooms"]["join"].get(room_id)
    return {} if room is None else {e["type"]: e["content"] for e in room["account_data"]["events"]}


async def test_initial_sync_has_default_push_rules(env: Env) -> None:
    token = env.token(ALICE)
    body = await env.sync(token)
    rules = global_data(body)["m.push_rules"]["global"]
    assert rules["override"][0]["rule_id"] == ".m.rule.master"
    assert any(r["rule_id"] == ".m.rule.is_user_mention" and r["conditions"][0]["value"] == ALICE
               for r in rules["override"])
    # The token has an account-data position (the sixth; the device-list one is the seventh).
    assert len(body["next_batch"].split("_")) == 7
    assert StreamToken.parse(body["next_batch"]).account_data == 0


async def test_global_and_room_account_data(env: Env) -> None:
    room = await shared_room(env, BOB)
    token = env.token(ALICE)
    first = await env.sync(token)
    await change(env, ALICE, "org.example.conf", {"a": 1})
    await change(env, ALICE, "m.tag", {"tags": {"u.work": {"order": 0.5}}}, room_id=room.room_id)
    await change(env, BOB, "org.example.conf", {"bob": True})  # someone else's
    body = await env.sync(token, since=first["next_batch"])
    assert global_data(body) == {"org.example.conf": {"a": 1}}
    # The room has no new events but comes for its account data.
    assert room_data(body, room.room_id) == {"m.tag": {"tags": {"u.work": {"order": 0.5}}}}
    assert body["rooms"]["join"][room.room_id]["timeline"]["events"] == []
    # Nothing new: nothing again.
    again = await env.sync(token, since=body["next_batch"])
    assert global_data(again) == {} and again["rooms"]["join"] == {}
    # An initial sync has everything, latest content only.
    await change(env, ALICE, "org.example.conf", {"a": 2})
    initial = await env.sync(token)
    assert global_data(initial)["org.example.conf"] == {"a": 2}
    assert room_data(initial, room.room_id) == {"m.tag": {"tags": {"u.work": {"order": 0.5}}}}
    # A replayed record (same content) changes nothing.
    position = env.syncapi.notifier.stream_position("account_data")
    await change(env, ALICE, "org.example.conf", {"a": 2}, wait=False)
    await change(env, ALICE, "org.example.other", {})
    assert env.syncapi.notifier.stream_position("account_data") == position + 1


async def test_account_data_of_rooms_not_joined_is_not_sent(env: Env) -> None:
    token = env.token(ALICE)
    first = await env.sync(token)
    await change(env, ALICE, "m.tag", {"tags": {}}, room_id="!elsewhere:test")
    body = await env.sync(token, since=first["next_batch"])
    assert body["rooms"]["join"] == {}


async def test_account_data_wakes_a_long_poll(env: Env) -> None:
    token = env.token(ALICE)
    first = await env.sync(token)
    polling = asyncio.create_task(env.sync(token, since=first["next_batch"], timeout=10_000))
    await asyncio.sleep(0.2)
    assert not polling.done()
    await change(env, ALICE, "org.example.conf", {"woke": True}, wait=False)
    body = await asyncio.wait_for(polling, 5)
    assert global_data(body) == {"org.example.conf": {"woke": True}}


async def test_push_rules_are_merged_with_defaults(env: Env) -> None:
    token = env.token(ALICE)
    first = await env.sync(token)
    stored = {"global": {"override": [{"rule_id": ".m.rule.master", "default": True, "enabled": True,
                                       "conditions": [], "actions": []}],
                         "content": [{"rule_id": "cake", "default": False, "enabled": True,
                                      "pattern": "cake", "actions": ["notify"]}]}}
    await change(env, ALICE, "m.push_rules", stored)
    body = await env.sync(token, since=first["next_batch"])
    rules = global_data(body)["m.push_rules"]["global"]
    assert rules["override"][0] == stored["global"]["override"][0]
    assert len(rules["override"]) > 1 and rules["underride"]
    assert [r["rule_id"] for r in rules["content"]] == ["cake"]


async def test_ignored_users(env: Env) -> None:
    room = await shared_room(env, BOB, CAROL)
    token = env.token(BOB)
    first = await env.sync(token)
    await change(env, BOB, "m.ignored_user_list", {"ignored_users": {CAROL: {}}})
    hello = room.message(CAROL, "hello")
    hi = room.message(ALICE, "hi")
    topic = room.set_state("m.room.topic", {"topic": "by carol"}, sender=CAROL)
    await env.send(hello, hi, topic)
    body = await env.sync(token, since=first["next_batch"])
    timeline = [e["event_id"] for e in body["rooms"]["join"][room.room_id]["timeline"]["events"]]
    # Carol's message is left out, her state event is not.
    assert timeline == [hi.event_id, topic.event_id]
    assert global_data(body)["m.ignored_user_list"] == {"ignored_users": {CAROL: {}}}
    # Invites from ignored users are not sent either.
    other = TestRoom(creator=CAROL)
    await env.send_room(other)
    await env.send(other.invite(CAROL, BOB))
    assert other.room_id not in (await env.sync(token))["rooms"]["invite"]
    await change(env, BOB, "m.ignored_user_list", {"ignored_users": {}})
    assert other.room_id in (await env.sync(token))["rooms"]["invite"]


@pytest.mark.postgres
async def test_account_data_on_postgres(tmp_path: Path, fresh_postgres_database: str) -> None:
    async with running_env(tmp_path, fresh_postgres_database) as pg_env:
        room = TestRoom()
        await pg_env.send_room(room)
        token = pg_env.token(ALICE)
        first = await pg_env.sync(token)
        await change(pg_env, ALICE, "org.example.conf", {"a": 1})
        await change(pg_env, ALICE, "org.example.conf", {"a": 2})
        await change(pg_env, ALICE, "m.tag", {"tags": {"u.x": {}}}, room_id=room.room_id)
        body = await pg_env.sync(token, since=first["next_batch"])
        assert global_data(body) == {"org.example.conf": {"a": 2}}
        assert room_data(body, room.room_id) == {"m.tag": {"tags": {"u.x": {}}}}


async def test_left_rooms_carry_their_account_data(env: Env) -> None:
    room = await shared_room(env, BOB)
    token = env.token(BOB)
    first = await env.sync(token)
    await change(env, BOB, "m.tag", {"tags": {"u.old": {}}}, room_id=room.room_id)
    await env.send(room.leave(BOB))
    body = await env.sync(token, since=first["next_batch"])
    left = body["rooms"]["leave"][room.room_id]
    assert left["account_data"]["events"] == [{"type": "m.tag", "content": {"tags": {"u.old": {}}}}]


class AccountDataSource:
    """The user API's account data, as the rebuild asks for it."""

    def __init__(self, data: dict[str, list[tuple[str, str, dict[str, Any]]]]) -> None:
        self.data = data
        self.asked: list[str] = []

    async def query_account_data(self, req: ua_pb.QueryAccountDataRequest) -> ua_pb.QueryAccountDataResponse:
        self.asked.append(req.user_id)
        if req.user_id == CAROL:
            raise errors.Unavailable("the user API is restarting")
        return ua_pb.QueryAccountDataResponse(account_data=[
            ua_pb.AccountData(user_id=req.user_id, room_id=room_id, type=data_type,
                              content_json=json.dumps(content, separators=(",", ":")).encode())
            for room_id, data_type, content in self.data.get(req.user_id, [])])


async def test_rebuild_after_a_lost_position(env: Env) -> None:
    room = await shared_room(env, BOB, CAROL)
    await change(env, ALICE, "org.example.kept", {"same": True})
    token = env.token(ALICE)
    first = await env.sync(token)
    source = AccountDataSource({
        ALICE: [("", "org.example.kept", {"same": True}), ("", "org.example.missed", {"n": 1}),
                (room.room_id, "m.tag", {"tags": {"u.missed": {}}})],
        BOB: [("", "org.example.bob", {})],
    })
    consumer = UserAPIConsumer(env.syncapi.database, env.syncapi.notifier, "test", source)
    # Alice's unchanged data is not written again; Carol's failure does not stop the others.
    assert await consumer.rebuild() == 3
    assert sorted(source.asked) == sorted([ALICE, BOB, CAROL])
    body = await env.sync(token, since=first["next_batch"])
    assert global_data(body) == {"org.example.missed": {"n": 1}}
    assert room_data(body, room.room_id) == {"m.tag": {"tags": {"u.missed": {}}}}
    assert await consumer.rebuild() == 0
    # Without a user API to ask, nothing can be rebuilt.
    assert await UserAPIConsumer(env.syncapi.database, env.syncapi.notifier, "test").rebuild() == 0


async def test_a_tag_set_before_the_join_reaches_here_comes_with_the_room(env: Env) -> None:
    """The tag and the join travel on different logs: when the tag is here
    first, the room joined later still comes with it."""
    token = env.token(ALICE)
    first = await env.sync(token)
    room = TestRoom()
    await change(env, ALICE, "m.tag", {"tags": {"u.work": {"order": 0.5}}}, room_id=room.room_id)
    between = await env.sync(token, since=first["next_batch"])
    assert room.room_id not in between["rooms"]["join"]
    await env.send_room(room)
    body = await env.sync(token, since=between["next_batch"])
    assert body["rooms"]["join"][room.room_id]["account_data"]["events"] == [
        {"type": "m.tag", "content": {"tags": {"u.work": {"order": 0.5}}}}]
