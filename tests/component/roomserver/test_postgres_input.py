"""The room server's input on PostgreSQL, where its hot statements run on
asyncpg directly and are merged (roomserver/storage/database.py): a message
costs two statements besides BEGIN and COMMIT (the batch's reads, which
reserve its events' NIDs; then the events with their rows, the outbox and
the room's row), a fork reads nothing more, and what those merged
statements carry (pending redactions, held rows updated or flushed, outbox
order, room rows) comes out as it does on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from myelin.roomserver.v1 import roomserver_pb2 as pb
from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

from common.log import Log
from common.storage import open_database
from matrixlib.events import Event
from tests.builders import TestRoom, input_event
from tests.component.roomserver.conftest import Running, make_config, read_output, start_roomserver

pytestmark = pytest.mark.postgres

ALICE = "@alice:test"
BOB = "@bob:test"
CAROL = "@carol:test"


@pytest.fixture
async def on_postgres(tmp_path: Path, log: Log, fresh_postgres_database: str) -> AsyncIterator[Running]:
    started = await start_roomserver(make_config(tmp_path, fresh_postgres_database), log)
    # As in a split deployment (Kafka): rooms' rows are not kept in memory.
    started.component.storage.sole_writer = False
    try:
        yield started
    finally:
        await started.stop()


@contextmanager
def counting_statements(running: Running) -> Iterator[list[str]]:
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *rest: object) -> None:
        statements.append(" ".join(statement.split()))

    engine = running.component.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", seen)


async def send(running: Running, events: list[Event], **kwargs: Any) -> list[int]:
    response = await running.component.api.input_room_events(pb.InputRoomEventsRequest(
        events=[input_event(e, **kwargs) for e in events], wait=True))
    return [r.outcome for r in response.results]


async def test_a_message_is_two_statements(on_postgres: Running) -> None:
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    # The first message interns its type (a statement or two, once).
    room.message(ALICE, "first")
    assert set(await send(on_postgres, room.events)) == {pb.INPUT_OUTCOME_ACCEPTED}
    message = room.message(BOB, "hello")
    with counting_statements(on_postgres) as statements:
        assert await send(on_postgres, [message], transaction_id=(BOB, "D", "t1")) == [pb.INPUT_OUTCOME_ACCEPTED]
    # Less the forgetting of output appended a while ago (a timer's own transaction).
    writes = [s for s in statements if not s.startswith(("DELETE FROM roomserver_output_outbox",
                                                          "UPDATE roomserver_events SET sent_to_output"))]
    assert len(writes) == 2, "\n".join(statements)
    assert writes[0].startswith("SELECT ARRAY(")
    assert writes[1].startswith("WITH new_events AS ( INSERT INTO roomserver_events")
    # A batch of several: the same two (the rows of all written together,
    # with their transaction IDs, which the first statement looked up).
    batch = [room.message(ALICE, f"batch {i}") for i in range(3)]
    with counting_statements(on_postgres) as statements:
        response = await on_postgres.component.api.input_room_events(pb.InputRoomEventsRequest(
            events=[input_event(e, transaction_id=(ALICE, "D", f"b{i}")) for i, e in enumerate(batch)], wait=True))
        assert [r.outcome for r in response.results] == [pb.INPUT_OUTCOME_ACCEPTED] * 3
    writes = [s for s in statements if not s.startswith(("DELETE FROM roomserver_output_outbox",
                                                          "UPDATE roomserver_events SET sent_to_output"))]
    assert len(writes) == 2, "\n".join(statements)
    latest = await on_postgres.component.api.query_latest_events_and_state(
        pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert list(latest.latest_event_ids) == [batch[-1].event_id]
    chain = await on_postgres.component.api.query_auth_chain(pb.QueryAuthChainRequest(event_ids=[batch[1].event_id]))
    assert room.create.event_id in {e.event_id for e in chain.auth_chain}


async def test_a_fork_reads_its_other_extremity_with_the_batch(on_postgres: Running) -> None:
    room = TestRoom("12", creator=ALICE)
    assert set(await send(on_postgres, room.events)) == {pb.INPUT_OUTCOME_ACCEPTED}
    late = room.message(ALICE, "built before the other", advance=False)
    first = room.message(ALICE, "input first")
    assert await send(on_postgres, [first]) == [pb.INPUT_OUTCOME_ACCEPTED]
    with counting_statements(on_postgres) as statements:
        assert await send(on_postgres, [late], transaction_id=(ALICE, "D", "t2")) == [pb.INPUT_OUTCOME_ACCEPTED]
    assert not [s for s in statements if s.startswith("SELECT roomserver_events.")], "\n".join(statements)
    latest = await on_postgres.component.api.query_latest_events_and_state(
        pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert sorted(latest.latest_event_ids) == sorted([first.event_id, late.event_id])
    merge = room.message(ALICE, "merge", prev_event_ids=[first.event_id, late.event_id])
    assert await send(on_postgres, [merge]) == [pb.INPUT_OUTCOME_ACCEPTED]
    latest = await on_postgres.component.api.query_latest_events_and_state(
        pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert list(latest.latest_event_ids) == [merge.event_id]


async def test_a_redaction_waits_for_its_target(on_postgres: Running) -> None:
    room = TestRoom("12", creator=ALICE)
    assert set(await send(on_postgres, room.events)) == {pb.INPUT_OUTCOME_ACCEPTED}
    # Both on the room's latest event: the redaction arrives first.
    target = room.message(ALICE, "secret", advance=False)
    redaction = room.redact(ALICE, target.event_id)
    assert await send(on_postgres, [redaction]) == [pb.INPUT_OUTCOME_ACCEPTED]
    assert not [o for o in await read_output(on_postgres.log) if o.HasField("redacted_event")]
    assert await send(on_postgres, [target]) == [pb.INPUT_OUTCOME_ACCEPTED]
    redacted = [o.redacted_event for o in await read_output(on_postgres.log) if o.HasField("redacted_event")]
    assert [(r.redacted_event_id, r.redaction_event_id) for r in redacted] == [(target.event_id, redaction.event_id)]
    # The target's row (new in that transaction, written at its end) says so too.
    storage = on_postgres.component.storage
    async with storage.reading() as txn:
        record = (await storage.event_records_by_id(txn, [target.event_id]))[target.event_id]
    assert record.redacted_by == redaction.event_id


async def test_unsent_output_is_sent_in_order_later(on_postgres: Running, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    room = TestRoom("12", creator=ALICE)
    assert set(await send(on_postgres, room.events)) == {pb.INPUT_OUTCOME_ACCEPTED}
    processor = on_postgres.component.processor
    # What was appended is forgotten (else sent again below, as after a crash).
    await processor.forget_sent()

    async def broken(room_id: str, payloads: object) -> None:
        raise ConnectionError("the log is down")

    messages = [room.message(ALICE, f"m{i}") for i in range(5)]
    with monkeypatch.context() as patched:
        patched.setattr(processor._producer, "send_many", broken)
        # Committed (the outcome stands), the output kept in the outbox.
        assert await send(on_postgres, messages) == [pb.INPUT_OUTCOME_ACCEPTED] * 5
    # In one transaction, not again event by event after a failure.
    assert "processing the batch again" not in caplog.text
    assert await processor.send_pending() == 5
    sent = [o.new_room_event.event.event_id for o in await read_output(on_postgres.log)
            if o.HasField("new_room_event")]
    assert sent[-5:] == [m.event_id for m in messages]
    assert await processor.send_pending() == 0


async def test_a_repeated_transaction_is_found_by_the_first_read(on_postgres: Running) -> None:
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    assert set(await send(on_postgres, room.events)) == {pb.INPUT_OUTCOME_ACCEPTED}
    first = room.message(BOB, "once")
    assert await send(on_postgres, [first], transaction_id=(BOB, "D", "t1")) == [pb.INPUT_OUTCOME_ACCEPTED]
    retry = room.message(BOB, "once, built again")
    with counting_statements(on_postgres) as statements:
        response = await on_postgres.component.api.input_room_events(pb.InputRoomEventsRequest(
            events=[input_event(retry, transaction_id=(BOB, "D", "t1"))], wait=True))
    [result] = response.results
    assert (result.outcome, result.transaction_event_id) == (pb.INPUT_OUTCOME_DUPLICATE, first.event_id)
    # The prefetch answered it; nothing was written.
    reads = [s for s in statements if not s.startswith(("DELETE FROM roomserver_output_outbox",
                                                         "UPDATE roomserver_events SET sent_to_output"))]
    assert len(reads) == 1 and reads[0].startswith("SELECT ARRAY("), "\n".join(statements)
    found = await on_postgres.component.api.query_events_by_id(pb.QueryEventsByIDRequest(event_ids=[retry.event_id]))
    assert list(found.events) == []


async def test_a_message_needs_no_begin_and_commit(on_postgres: Running) -> None:
    """Its two statements run alone (the prefetch before the transaction
    would begin, the held writes as its only write); an input that writes
    more (a join's state) runs in a transaction that begins and commits."""
    on_postgres.component.storage.sole_writer = True  # rooms' rows in memory, as the only writer
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    room.message(ALICE, "first")
    assert set(await send(on_postgres, room.events)) == {pb.INPUT_OUTCOME_ACCEPTED}
    begun: list[str] = []
    original = AsyncAdapt_asyncpg_connection._start_transaction

    async def counted(self: AsyncAdapt_asyncpg_connection) -> None:
        begun.append("BEGIN")
        await original(self)  # type: ignore[no-untyped-call]

    with mock.patch.object(AsyncAdapt_asyncpg_connection, "_start_transaction", counted):
        message = room.message(BOB, "hello")
        assert await send(on_postgres, [message], transaction_id=(BOB, "D", "t1")) == [pb.INPUT_OUTCOME_ACCEPTED]
        assert begun == []
        assert await send(on_postgres, [room.join(CAROL)]) == [pb.INPUT_OUTCOME_ACCEPTED]
        assert begun, "a join's transaction began"
    latest = await on_postgres.component.api.query_latest_events_and_state(
        pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert list(latest.latest_event_ids) == [room.events[-1].event_id]
    found = await on_postgres.component.api.query_events_by_id(pb.QueryEventsByIDRequest(event_ids=[message.event_id]))
    assert [e.event_id for e in found.events] == [message.event_id]


async def test_the_room_servers_sessions_plan_each_statement_once(on_postgres: Running,
                                                                  fresh_postgres_database: str) -> None:
    # Its statements are lookups by key (common.storage.GENERIC_PLANS): the
    # batch's reads were planned anew at every execution otherwise.
    async with on_postgres.component.database.connect() as conn:
        assert (await conn.exec_driver_sql("SHOW plan_cache_mode")).scalar() == "force_generic_plan"
    # Other components' sessions keep PostgreSQL's default.
    other = await open_database(fresh_postgres_database, "syncapi")
    try:
        async with other.connect() as conn:
            assert (await conn.exec_driver_sql("SHOW plan_cache_mode")).scalar() == "auto"
    finally:
        await other.close()
    # And what it plans once still answers: a message goes in as before.
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    room.message(BOB, "hello")
    assert set(await send(on_postgres, room.events)) == {pb.INPUT_OUTCOME_ACCEPTED}
