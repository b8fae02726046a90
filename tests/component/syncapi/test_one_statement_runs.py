"""PostgreSQL: a run of plain messages that follows on from what this process
wrote last is written in one statement on the raw connection
(syncapi/storage/tables/message_runs_pg.py), with the rows the transaction
path writes; anything else, or a refused statement, goes the transaction way."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from sqlalchemy import event, select

from syncapi.internal.push import unread_counts
from syncapi.storage.tables import notifications as notifications_t
from syncapi.storage.tables import room_positions as positions_t
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, shared_room
from tests.component.syncapi.test_output_batches import records_of, timeline_positions

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("database_url")]


@pytest.fixture
def database_url(fresh_postgres_database: str) -> str:
    """Every test of this file runs on PostgreSQL only (the path is PostgreSQL's)."""
    assert fresh_postgres_database.startswith("postgresql")
    return fresh_postgres_database


class Statements:
    """The statements SQLAlchemy runs on the sync API's database while in use."""

    def __init__(self, env: Env) -> None:
        self.engine = env.syncapi.database.database.engine.sync_engine
        self.seen: list[str] = []

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "syncapi_stream_position" not in statement or statement.startswith("UPDATE"):
            self.seen.append(" ".join(statement.split()))

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


async def _write(env: Env, room: TestRoom, *bodies: str, sender: str = ALICE,
                 txn: tuple[str, str, str] | None = None) -> list[str]:
    """Sends messages as one run through the component's own consumer (push rules included)."""
    messages = [room.message(sender, body) for body in bodies]
    outputs = [env.new_room_event(m, txn=txn) for m in messages]
    await env.syncapi.consumer.handle_records(records_of(outputs, room.room_id))
    return [m.event_id for m in messages]


async def _notifications(env: Env, user_id: str) -> list[tuple[int, str, str]]:
    async with env.syncapi.database.read() as reader:
        rows = await reader.conn.execute(
            select(notifications_t.notifications.c.stream_pos, notifications_t.notifications.c.event_id,
                   notifications_t.notifications.c.thread_id)
            .where(notifications_t.notifications.c.user_id == user_id)
            .order_by(notifications_t.notifications.c.stream_pos))
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


async def test_a_run_is_one_statement_with_the_rows_of_the_transaction_path(env: Env) -> None:
    room = await shared_room(env, BOB, CAROL)
    database = env.syncapi.database
    await _write(env, room, "warm")  # now the room's last entry is this process's

    with Statements(env) as fast:
        fast_ids = await _write(env, room, "searchable one", "two", sender=ALICE, txn=(ALICE, "DEV", "t1"))
    assert fast.seen == []  # none through SQLAlchemy: the one raw statement did it all

    database._last_written.clear()  # the transaction path from here
    with Statements(env) as slow:
        slow_ids = await _write(env, room, "searchable one", "two", sender=ALICE, txn=(ALICE, "DEV", "t2"))
    assert any(s.startswith("INSERT INTO syncapi_events") for s in slow.seen)

    fast_positions = await timeline_positions(env, fast_ids)
    slow_positions = await timeline_positions(env, slow_ids)
    assert len(fast_positions) == 2 and fast_positions[1] == fast_positions[0] + 1
    assert slow_positions[0] > fast_positions[1]
    async with database.read() as reader:
        stored = await reader.events_by_ids(fast_ids + slow_ids)
        hits = await reader.search_events("searchable", room_ids=[room.room_id], keys=["content.body"],
                                          order_by_rank=False, limit=5)
        last = (await reader.conn.execute(select(positions_t.room_positions).where(
            positions_t.room_positions.c.room_id == room.room_id))).one()

    def comparable(event_id: str) -> dict[str, Any]:
        row = dataclasses.asdict(stored[event_id])
        content = json.loads(row.pop("event_json"))["content"]
        for varying in ("stream_pos", "event_id", "depth", "origin_server_ts", "txn_id"):
            row.pop(varying)
        return {**row, "content": content}

    for fast_id, slow_id in zip(fast_ids, slow_ids, strict=True):
        assert comparable(fast_id) == comparable(slow_id)
    assert stored[fast_ids[0]].txn_id == "t1" and stored[fast_ids[0]].txn_device_id == "DEV"
    assert sorted(h.stream_pos for h in hits) == [fast_positions[0], slow_positions[0]]
    assert last.last_event_id == slow_ids[-1]

    # Each member but the sender has a notification at each event's own position.
    for user_id in (BOB, CAROL):
        found = [(pos, event_id) for pos, event_id, _ in await _notifications(env, user_id)]
        for event_id, position in [*zip(fast_ids, fast_positions, strict=True),
                                   *zip(slow_ids, slow_positions, strict=True)]:
            assert (position, event_id) in found
    assert await _notifications(env, ALICE) == []
    # And /sync counts them.
    body = await env.sync(env.token(BOB))
    assert body["rooms"]["join"][room.room_id]["unread_notifications"]["notification_count"] >= 4


async def test_the_run_wakes_its_members_with_the_events(env: Env) -> None:
    room = await shared_room(env, BOB)
    await _write(env, room, "warm")
    token = env.token(BOB)
    since = await env.next_batch(token)
    poll = asyncio.create_task(env.sync(token, since=since, timeout=10000))
    await asyncio.sleep(0.1)
    assert not poll.done()
    ids = await _write(env, room, "news")
    body = await asyncio.wait_for(poll, 5)
    joined = body["rooms"]["join"][room.room_id]
    assert [e["event_id"] for e in joined["timeline"]["events"]] == ids
    assert joined["unread_notifications"]["notification_count"] == 2  # "warm" and "news"


async def test_a_run_stored_already_falls_back_and_is_written_once(env: Env) -> None:
    room = await shared_room(env, BOB)
    first = await _write(env, room, "first")
    database = env.syncapi.database
    # Re-sent (the room server's outbox after a crash): the statement fails
    # on the stored event ID, nothing of it is kept, and the transaction
    # path finds the event stored and skips it.
    message = room.message(ALICE, "again")
    output = env.new_room_event(message)
    await env.syncapi.consumer.handle_records(records_of([output], room.room_id))
    [position] = await timeline_positions(env, [message.event_id])
    database._last_written[room.room_id] = first[0]  # as if that write had not been seen
    await env.syncapi.consumer.handle_records(records_of([output], room.room_id))
    assert await timeline_positions(env, [message.event_id]) == [position]
    assert [pos for pos, event_id, _ in await _notifications(env, BOB) if event_id == message.event_id] == [position]
    # The next run follows on again.
    later = await _write(env, room, "later")
    [later_position] = await timeline_positions(env, later)
    assert later_position > position
    assert database._last_written[room.room_id] == later[0]


async def test_concurrent_runs_take_distinct_positions_the_notifier_knows(env: Env) -> None:
    rooms = [await shared_room(env, BOB) for _ in range(4)]
    for room in rooms:
        await _write(env, room, "warm")
    taken: list[int] = []
    database = env.syncapi.database
    told = database.on_positions_taken

    def note(positions: range) -> None:
        taken.extend(positions)
        if told is not None:
            told(positions)

    database.on_positions_taken = note
    try:
        runs = await asyncio.gather(*(_write(env, room, *[f"m{i}" for i in range(3)]) for room in rooms))
    finally:
        database.on_positions_taken = told
    positions = [p for ids in runs for p in await timeline_positions(env, ids)]
    assert len(positions) == 12 and sorted(positions) == sorted(set(positions)) == sorted(taken)
    assert env.syncapi.notifier.position >= max(positions)


async def test_positions_are_not_checked_while_a_write_is_under_way(env: Env) -> None:
    database = env.syncapi.database
    assert await database.settled_positions() == await database.current_positions()
    database._writes_in_flight += 1
    try:
        assert await database.settled_positions() is None
    finally:
        database._writes_in_flight -= 1


async def test_a_woken_sync_reads_news_and_unread_counts_in_one_statement(env: Env) -> None:
    first, second = await shared_room(env, BOB), await shared_room(env, BOB)
    in_first = await _write(env, first, "a1", "a2", "a3")
    await _write(env, second, "b1", "b2")
    # Bob read up to a2 in the first room: a3 and what follows are unread.
    assert await env.syncapi.database.write_receipt(first.room_id, "m.read", BOB, "", in_first[1], 5) is not None
    token = env.token(BOB)
    since = await env.next_batch(token)
    await _write(env, first, "a4")
    await _write(env, second, "b3")

    with Statements(env) as woken:
        body = await env.sync(token, since=since)
    assert len(woken.seen) == 1 and "syncapi_notifications" in woken.seen[0], woken.seen
    async with env.syncapi.database.read() as reader:
        expected = await unread_counts(reader, BOB, [first.room_id, second.room_id])  # the separate statement
    for room in (first, second):
        entry = body["rooms"]["join"][room.room_id]
        assert {"unread_notifications": entry["unread_notifications"]} == expected[room.room_id].as_sync(False)
    assert body["rooms"]["join"][first.room_id]["unread_notifications"]["notification_count"] == 2
    second_count = body["rooms"]["join"][second.room_id]["unread_notifications"]["notification_count"]
    assert second_count >= 3


async def test_push_rules_read_afresh_before_the_statement(env: Env) -> None:
    room = await shared_room(env, BOB, CAROL)
    await _write(env, room, "warm")
    env.syncapi.push_evaluator.forget_room(room.room_id)  # what push rules need is read again
    with Statements(env) as seen:
        ids = await _write(env, room, "after the rules were forgotten")
    assert seen.seen and all(s.startswith(("SELECT", "WITH")) for s in seen.seen), seen.seen
    [position] = await timeline_positions(env, ids)
    for user_id in (BOB, CAROL):
        assert (position, ids[0], "") in await _notifications(env, user_id)
