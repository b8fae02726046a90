"""The room server processes a room's queued input records together, in one
transaction: each event is checked against the state the events before it
left, a bad record or event costs the others nothing, and the output comes
in input order."""

from __future__ import annotations

import uuid
from pathlib import Path

from myelin.roomserver.v1 import input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as pb
from sqlalchemy import event, select

from common.log import Log
from common.topics import ROOMSERVER_INPUT
from matrixlib.events import Event
from roomserver.component import open_roomserver
from roomserver.storage.tables.events import events as events_table
from roomserver.storage.tables.outbox import output_outbox
from tests.builders import TEST_SIGNING_KEY, TestRoom, input_event
from tests.component.roomserver.conftest import Running, make_config, read_output

ALICE = "@alice:test"
BOB = "@bob:test"
CAROL = "@carol:test"


def entry_of(events: list[Event]) -> bytes:
    room_id = events[0].room_id
    return input_log_pb2.InputRoomEventsEntry(
        request_id=uuid.uuid4().hex, room_id=room_id, events=[input_event(e) for e in events]).SerializeToString()


def timeline_of(outputs: list[object]) -> list[str]:
    return [o.new_room_event.event.event_id for o in outputs  # type: ignore[attr-defined]
            if o.WhichOneof("payload") == "new_room_event"]  # type: ignore[attr-defined]


async def test_a_batch_sees_the_state_its_earlier_events_made(tmp_path: Path, log: Log) -> None:
    roomserver = await open_roomserver(make_config(tmp_path), log, TEST_SIGNING_KEY)
    try:
        room = TestRoom("12", creator=ALICE)
        bob_join = room.join(BOB)
        bob_says = room.message(BOB, "hello")  # allowed only by the join before it
        carol_says = room.message(CAROL, "not a member", advance=False)
        alice_says = room.message(ALICE, "after the bad ones")
        values = [entry_of(room.events[:4]), entry_of([bob_join]), entry_of([bob_says]), b"\xff garbage",
                  entry_of([carol_says]), entry_of([alice_says])]
        answers = await roomserver.processor.process_records(values)

        outcomes = [[r.outcome for r in results] for _, results in answers]
        accepted = pb.INPUT_OUTCOME_ACCEPTED
        assert outcomes == [[accepted] * 4, [accepted], [accepted], [], [pb.INPUT_OUTCOME_REJECTED], [accepted]]
        assert answers[3][0] == ""
        # Output in input order, the rejected event left out.
        expected = [e.event_id for e in [*room.events[:4], bob_join, bob_says, alice_says]]
        assert timeline_of(list(await read_output(log))) == expected

        state = await roomserver.api.query_latest_events_and_state(
            pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
        assert bob_join.event_id in {e.event_id for e in state.state_events}
        assert list(state.latest_event_ids) == [alice_says.event_id]

        # What was sent is forgotten by the next transaction (or on close).
        await roomserver.processor.close()
        async with roomserver.storage.reading() as txn:
            assert (await txn.conn.execute(select(output_outbox))).all() == []
            unsent = await txn.conn.execute(select(events_table.c.event_id)
                                            .where(events_table.c.sent_to_output.is_(False)))
            assert unsent.all() == []
    finally:
        await roomserver.close()


async def test_input_queued_for_a_room_is_consumed_in_order(running: Running) -> None:
    room = TestRoom("12", creator=ALICE)
    messages = [room.message(ALICE, f"m{i}") for i in range(20)]
    key = room.room_id.encode()
    # Appended straight to the log, faster than one by one: the consumer
    # takes them in batches.
    for value in [entry_of(room.events[:4]), *(entry_of([m]) for m in messages)]:
        await running.log.append(ROOMSERVER_INPUT.name, key, value)
    expected = [e.event_id for e in room.events]
    for _ in range(50):
        timeline = timeline_of(list(await read_output(running.log, quiet_seconds=0.1)))
        if len(timeline) >= len(expected):
            break
    assert timeline == expected


async def test_a_batch_reads_its_events_auth_and_prev_events_in_one_statement(tmp_path: Path, log: Log) -> None:
    roomserver = await open_roomserver(make_config(tmp_path), log, TEST_SIGNING_KEY)
    try:
        room = TestRoom("12", creator=ALICE)
        bob_join = room.join(BOB)
        await roomserver.processor.process_records([entry_of([*room.events[:4], bob_join])])
        # Fresh caches, as for records consumed by a later batch.
        await roomserver.processor.close()
        messages = [room.message(BOB if i % 2 else ALICE, f"m{i}") for i in range(5)]
        selects: list[str] = []
        listener_args = (roomserver.storage.db.engine.sync_engine, "before_cursor_execute")

        def count(conn: object, cursor: object, statement: str, *rest: object) -> None:
            if statement.startswith("SELECT roomserver_events."):
                selects.append(statement)

        event.listen(*listener_args, count)
        try:
            answers = await roomserver.processor.process_records([entry_of(messages[:2]), entry_of(messages[2:])])
        finally:
            event.remove(*listener_args, count)
        assert [[r.outcome for r in results] for _, results in answers] == [
            [pb.INPUT_OUTCOME_ACCEPTED] * 2, [pb.INPUT_OUTCOME_ACCEPTED] * 3]
        assert len(selects) == 1, selects
    finally:
        await roomserver.close()
