"""Account data and pushers through both bindings; changes published on userapi.account_data."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from myelin.userapi.v1 import account_data_log_pb2
from myelin.userapi.v1 import userapi_pb2 as pb

from common import errors
from common.log import Log, LogConsumer, LogRecord
from common.logs import open_log
from common.topics import USERAPI_ACCOUNT_DATA
from tests.component.userapi.conftest import CHEAP_SCRYPT, SERVER_NAME, make_config
from userapi.api import UserAPI
from userapi.component import open_userapi

ALICE = f"@alice:{SERVER_NAME}"
ROOM = "!room:elsewhere"


def data(room_id: str, data_type: str, content: dict[str, object], user_id: str = ALICE) -> pb.AccountData:
    return pb.AccountData(user_id=user_id, room_id=room_id, type=data_type,
                          content_json=json.dumps(content).encode())


async def test_global_and_room_account_data(userapi: UserAPI) -> None:
    await userapi.perform_account_data_update(data("", "org.example.a", {"x": 1}))
    await userapi.perform_account_data_update(data("", "org.example.a", {"x": 2}))
    await userapi.perform_account_data_update(data(ROOM, "m.tag", {"tags": {"u.work": {}}}))
    one = await userapi.query_account_data(pb.QueryAccountDataRequest(user_id=ALICE, type="org.example.a"))
    assert [json.loads(d.content_json) for d in one.account_data] == [{"x": 2}]
    room = await userapi.query_account_data(pb.QueryAccountDataRequest(user_id=ALICE, room_id=ROOM))
    assert [(d.room_id, d.type) for d in room.account_data] == [(ROOM, "m.tag")]
    glob = await userapi.query_account_data(pb.QueryAccountDataRequest(user_id=ALICE))
    assert [(d.room_id, d.type) for d in glob.account_data] == [("", "org.example.a")]
    everything = await userapi.query_account_data(pb.QueryAccountDataRequest(user_id=ALICE, all_rooms=True))
    assert {(d.room_id, d.type) for d in everything.account_data} == {("", "org.example.a"), (ROOM, "m.tag")}
    # Room data is not global data of the same type, and vice versa.
    with pytest.raises(errors.NotFound):
        await userapi.query_account_data(pb.QueryAccountDataRequest(user_id=ALICE, type="m.tag"))
    with pytest.raises(errors.NotFound):
        await userapi.query_account_data(pb.QueryAccountDataRequest(user_id=ALICE, room_id=ROOM,
                                                                    type="org.example.a"))


async def test_account_data_bad_input(userapi: UserAPI) -> None:
    with pytest.raises(errors.BadJSON):
        await userapi.perform_account_data_update(pb.AccountData(user_id=ALICE, type="t", content_json=b"[1]"))
    with pytest.raises(errors.NotJSON):
        await userapi.perform_account_data_update(pb.AccountData(user_id=ALICE, type="t", content_json=b"{"))
    with pytest.raises(errors.NotFound):
        await userapi.perform_account_data_update(data("", "t", {}, user_id="@bob:remote.example"))
    with pytest.raises(errors.InvalidParam):
        await userapi.perform_account_data_update(data("", "", {}))


async def test_pushers(userapi: UserAPI) -> None:
    pusher = pb.Pusher(pushkey="key1", kind="http", app_id="org.example.app", app_display_name="App",
                       device_display_name="Phone", lang="en", data_json=b'{"url":"https://push.example/"}')
    await userapi.perform_pusher_set(pb.PerformPusherSetRequest(user_id=ALICE, pusher=pusher))
    bob = f"@bob:{SERVER_NAME}"
    await userapi.perform_pusher_set(pb.PerformPusherSetRequest(user_id=bob, pusher=pusher, append=True))
    listed = await userapi.query_pushers(pb.QueryPushersRequest(user_id=ALICE))
    assert [(p.app_id, p.pushkey, p.kind, json.loads(p.data_json)) for p in listed.pushers] == [
        ("org.example.app", "key1", "http", {"url": "https://push.example/"})]
    assert listed.pushers[0].pushkey_ts > 0  # when it was set: the push gateway's pushkey_ts
    # Without append, the same app and key of other users goes.
    await userapi.perform_pusher_set(pb.PerformPusherSetRequest(user_id=ALICE, pusher=pusher))
    assert not (await userapi.query_pushers(pb.QueryPushersRequest(user_id=bob))).pushers
    removed = pb.Pusher(pushkey="key1", app_id="org.example.app")
    await userapi.perform_pusher_set(pb.PerformPusherSetRequest(user_id=ALICE, pusher=removed))
    assert not (await userapi.query_pushers(pb.QueryPushersRequest(user_id=ALICE))).pushers
    with pytest.raises(errors.MissingParam):
        await userapi.perform_pusher_set(pb.PerformPusherSetRequest(user_id=ALICE, pusher=pb.Pusher(kind="http")))


async def test_changes_are_published(tmp_path: Path) -> None:
    log = open_log(None, tmp_path / "log", "test")
    await log.start()
    component = await open_userapi(make_config(tmp_path), password_params=CHEAP_SCRYPT, log=log)
    try:
        await component.api.perform_account_data_update(data(ROOM, "m.tag", {"tags": {}}))
        await component.api.perform_account_data_update(data("", "m.ignored_user_list", {"ignored_users": {}}))
        consumer = await log.consumer("test", [USERAPI_ACCOUNT_DATA.name])
        records = await consumer.fetch(timeout=2.0)
        changes = [account_data_log_pb2.AccountDataChange.FromString(r.value) for r in records]
        assert [(c.user_id, c.room_id, c.type) for c in changes] == [
            (ALICE, ROOM, "m.tag"), (ALICE, "", "m.ignored_user_list")]
        assert {r.key for r in records} == {ALICE.encode()}
        await consumer.close()
    finally:
        await component.close()
        await log.close()


@pytest.mark.postgres
async def test_on_postgresql(tmp_path: Path, fresh_postgres_database: str) -> None:
    component = await open_userapi(make_config(tmp_path, fresh_postgres_database), password_params=CHEAP_SCRYPT)
    try:
        await test_global_and_room_account_data(component.api)
        await test_pushers(component.api)
    finally:
        await component.close()


class SlowLog:
    """A log whose appends take a while, in no particular order."""

    def __init__(self, log: Log) -> None:
        self._log = log
        self._random = random.Random(7)

    async def start(self) -> None:
        await self._log.start()

    async def append(self, topic: str, key: bytes, value: bytes) -> LogRecord:
        await asyncio.sleep(self._random.random() / 50)
        return await self._log.append(topic, key, value)

    async def consumer(self, group: str, topics: Sequence[str]) -> LogConsumer:
        return await self._log.consumer(group, topics)

    async def close(self) -> None:
        await self._log.close()


async def test_concurrent_changes_are_published_in_the_order_stored(tmp_path: Path) -> None:
    log = SlowLog(open_log(None, tmp_path / "log", "test"))
    await log.start()
    component = await open_userapi(make_config(tmp_path), password_params=CHEAP_SCRYPT, log=log)
    try:
        await asyncio.gather(*(component.api.perform_account_data_update(data("", "org.example.n", {"n": n}))
                               for n in range(20)))
        stored = await component.api.query_account_data(pb.QueryAccountDataRequest(
            user_id=ALICE, type="org.example.n"))
        consumer = await log.consumer("test", [USERAPI_ACCOUNT_DATA.name])
        records = await consumer.fetch(timeout=2.0)
        assert len(records) == 20
        last = account_data_log_pb2.AccountDataChange.FromString(records[-1].value)
        assert json.loads(last.content_json) == json.loads(stored.account_data[0].content_json)
        await consumer.close()
    finally:
        await component.close()
        await log.close()
