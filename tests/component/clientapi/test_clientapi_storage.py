"""The client API's own table (transaction IDs) on SQLite and PostgreSQL,
and the component opening and closing its database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from unittest import mock

import pytest

from clientapi.component import open_clientapi
from clientapi.storage import database as storage
from clientapi.storage.database import ClientAPIDatabase
from common.storage import open_database
from matrixlib.signing import generate_signing_key
from tests.component.clientapi.conftest import Harness, make_config
from tests.fakes.roomserver import FakeRoomserver
from userapi.component import open_userapi


async def check_transactions(db: ClientAPIDatabase) -> None:
    assert await db.get_transaction("@a:x", "DEV", "send/!r/m", "t1") is None
    await db.store_transaction("@a:x", "DEV", "send/!r/m", "t1", "$one")
    assert await db.get_transaction("@a:x", "DEV", "send/!r/m", "t1") == "$one"
    assert await db.get_transaction("@a:x", "OTHER", "send/!r/m", "t1") is None
    assert await db.get_transaction("@a:x", "DEV", "send/!r/n", "t1") is None
    # Expired entries are ignored and may be replaced.
    later = storage._now_ms() + storage.TRANSACTION_TTL_MS + 1000
    with mock.patch.object(storage, "_now_ms", return_value=later):
        assert await db.get_transaction("@a:x", "DEV", "send/!r/m", "t1") is None
        await db.store_transaction("@a:x", "DEV", "send/!r/m", "t1", "$two")
        assert await db.get_transaction("@a:x", "DEV", "send/!r/m", "t1") == "$two"


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


async def test_open_clientapi_owns_its_database(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    userapi = await open_userapi(config)
    try:
        component = await open_clientapi(config, None, FakeRoomserver(), userapi.api, generate_signing_key("k"))
        assert (tmp_path / "clientapi.db").exists()
        await component.close()
    finally:
        await userapi.close()
