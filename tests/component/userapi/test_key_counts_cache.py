"""The one-time key counts every /sync with news asks for are kept until the
user API's database is next written: a claim, an upload or a device deletion
in between is always seen, and a read between writes runs no statement."""

from __future__ import annotations

from myelin.userapi.v1 import userapi_pb2 as pb
from sqlalchemy import event
from sqlalchemy.engine import Connection

from tests.component.userapi.test_userapi_keys import ALICE, claim, upload
from tests.e2ee import ClientDevice
from userapi.api import UserAPI
from userapi.component import UserAPIComponent


async def counts_of(userapi: UserAPI, device_id: str) -> tuple[dict[str, int], list[str]]:
    counts = await userapi.query_one_time_key_counts(pb.QueryOneTimeKeyCountsRequest(user_id=ALICE,
                                                                                      device_id=device_id))
    return dict(counts.one_time_key_counts), list(counts.unused_fallback_key_types)


async def test_counts_follow_every_write_and_repeat_reads_run_no_statement(
        userapi_component: UserAPIComponent) -> None:
    userapi = userapi_component.api
    phone = ClientDevice(ALICE, "PHONE")
    await upload(userapi, phone, one_time=phone.one_time_keys("a", "b"), fallback=phone.fallback_key("f1"))
    assert await counts_of(userapi, "PHONE") == ({"signed_curve25519": 2}, ["signed_curve25519"])

    statements: list[str] = []

    def count(conn: Connection, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = userapi_component.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert await counts_of(userapi, "PHONE") == ({"signed_curve25519": 2}, ["signed_curve25519"])
        assert statements == []
    finally:
        event.remove(engine, "before_cursor_execute", count)

    await claim(userapi, ALICE, "PHONE")
    assert await counts_of(userapi, "PHONE") == ({"signed_curve25519": 1}, ["signed_curve25519"])
    await claim(userapi, ALICE, "PHONE")
    await claim(userapi, ALICE, "PHONE")  # the fallback key, now used
    assert await counts_of(userapi, "PHONE") == ({}, [])
    await upload(userapi, phone, device_keys=False, one_time=phone.one_time_keys("c"))
    assert await counts_of(userapi, "PHONE") == ({"signed_curve25519": 1}, [])
    # An answer handed out is a copy: changing it changes nothing kept.
    first = await userapi.query_one_time_key_counts(pb.QueryOneTimeKeyCountsRequest(user_id=ALICE,
                                                                                    device_id="PHONE"))
    first.one_time_key_counts["signed_curve25519"] = 99
    assert await counts_of(userapi, "PHONE") == ({"signed_curve25519": 1}, [])
