"""The client API's own table (transaction IDs) on SQLite and PostgreSQL,
and the component opening and closing its database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from unittest import mock

import pytest
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from clientapi.component import open_clientapi
from clientapi.storage import database as storage
from clientapi.storage.database import ClientAPIDatabase, TransactionRow
from common import errors
from common.storage import open_database
from matrixlib.signing import generate_signing_key
from tests.component.clientapi.conftest import Harness, HarnessFactory, make_config
from tests.fakes.roomserver import FakeRoomserver
from userapi.component import open_userapi


async def event_id_of(db: ClientAPIDatabase, *key: str) -> str | None:
    found = await db.get_transaction(*key)
    return None if found is None else found.event_id


async def check_transactions(db: ClientAPIDatabase) -> None:
    key = ("@a:x", "DEV", "sendToDevice/m.x", "t1")
    assert await db.get_transaction(*key) is None
    await db.store_transaction(*key, "")
    assert await db.get_transaction(*key) == TransactionRow(event_id="", pending=False, room_version=None,
                                                            event_json=None)
    assert await event_id_of(db, "@a:x", "OTHER", "sendToDevice/m.x", "t1") is None
    assert await event_id_of(db, "@a:x", "DEV", "sendToDevice/m.y", "t1") is None
    # Expired entries are ignored and may be replaced.
    later = storage._now_ms() + storage.TRANSACTION_TTL_MS + 1000
    with mock.patch.object(storage, "_now_ms", return_value=later):
        assert await db.get_transaction(*key) is None
        await db.store_transaction(*key, "$two")
        assert await event_id_of(db, *key) == "$two"


async def test_transactions_sqlite(tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'clientapi.db'}", "clientapi")
    try:
        await check_transactions(ClientAPIDatabase(db))
    finally:
        await db.close()


@pytest.mark.postgres
async def test_transactions_postgres(fresh_postgres_database: str) -> None:
    db = await open_database(fresh_postgres_database, "clientapi")
    try:
        await check_transactions(ClientAPIDatabase(db))
    finally:
        await db.close()


async def test_concurrent_retries_send_once(harness: Harness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice)
    rs = harness.roomserver
    assert isinstance(rs, FakeRoomserver)
    before = len(rs.inputs)
    responses = await asyncio.gather(*[
        harness.send(alice, room_id, {"msgtype": "m.text", "body": "once"}, "same") for _ in range(5)])
    assert len({r.json()["event_id"] for r in responses}) == 1
    assert len(rs.inputs) == before + 1
    # The per-transaction locks are gone once nobody holds them.
    assert len(harness.clientapi.services._txn_locks) == 0


async def test_open_clientapi_owns_its_database(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    userapi = await open_userapi(config)
    try:
        component = await open_clientapi(config, None, FakeRoomserver(), userapi.api, generate_signing_key("k"))
        assert (tmp_path / "clientapi.db").exists()
        await component.close()
    finally:
        await userapi.close()


class CrashingRoomserver(FakeRoomserver):
    """Fails the input call of the next message: after processing it
    (the answer was lost) or before (the log append was lost)."""

    def __init__(self) -> None:
        super().__init__()
        self.crash: str | None = None

    async def input_room_events(self, req: rs_pb.InputRoomEventsRequest) -> rs_pb.InputRoomEventsResponse:
        mode, self.crash = self.crash, None
        if mode == "before":
            raise errors.Unavailable("room server restarting")
        answer = await super().input_room_events(req)
        if mode == "after":
            raise errors.Unavailable("room server restarting")
        return answer


@pytest.mark.parametrize("mode", ["before", "after"])
async def test_retry_after_failed_input_resends_the_same_event(make_harness: HarnessFactory, mode: str) -> None:
    rs = CrashingRoomserver()
    harness = await make_harness(roomserver=rs)
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice)
    rs.crash = mode
    failed = await harness.send(alice, room_id, {"msgtype": "m.text", "body": "once"}, "t1")
    assert failed.status_code == 503
    # The room moves on before the retry: the retry must still not build anew.
    other = await harness.send(alice, room_id, {"msgtype": "m.text", "body": "other"}, "t2")
    assert other.status_code == 200
    retried = await harness.send(alice, room_id, {"msgtype": "m.text", "body": "once"}, "t1")
    assert retried.status_code == 200, retried.text
    room = rs.rooms[room_id]
    bodies = [str(e.content.get("body")) for e in room.events.values() if e.type == "m.room.message"]
    assert sorted(bodies) == ["once", "other"]
    once = next(e for e in room.events.values() if e.content.get("body") == "once")
    assert retried.json()["event_id"] == once.event_id
    again = await harness.send(alice, room_id, {"msgtype": "m.text", "body": "once"}, "t1")
    assert again.json() == retried.json()


async def test_rejected_send_can_be_retried_with_a_new_event(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice, preset="public_chat")
    refused = await harness.send(bob, room_id, {"msgtype": "m.text", "body": "hi"}, "t1")
    assert refused.status_code == 403
    await harness.http.post(f"/_matrix/client/v3/rooms/{room_id}/join", json={}, headers=bob.headers)
    accepted = await harness.send(bob, room_id, {"msgtype": "m.text", "body": "hi"}, "t1")
    assert accepted.status_code == 200, accepted.text
