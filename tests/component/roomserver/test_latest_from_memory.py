"""QueryLatestEventsAndState (asked once per sent event) is answered from
memory by the room server that is its database's only writer (the one
consuming the embedded log), and the answer is always the one the database
gives: after new events, state changes, redactions and a failed batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from myelin.roomserver.v1 import events_pb2
from myelin.roomserver.v1 import roomserver_pb2 as pb
from sqlalchemy import event

from matrixlib.events import CREATE, MEMBER, NAME, POWER_LEVELS, Event
from roomserver.internal.query.queries import STATE_ANSWER_MAX_EVENTS, Queries
from roomserver.storage.database import RoomRecord, RoomserverDatabase
from roomserver.storage.tables import membership as membership_t
from tests.builders import TestRoom, input_event
from tests.component.roomserver.conftest import Running

ALICE = "@alice:test"
BOB = "@bob:test"

WANTED = [events_pb2.StateKeyTuple(event_type=t, state_key=k)
          for t, k in ((CREATE, ""), (POWER_LEVELS, ""), (MEMBER, BOB), (NAME, ""))]


@contextmanager
def counting_statements(running: Running) -> Iterator[list[str]]:
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *rest: object) -> None:
        statements.append(statement)

    engine = running.component.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", seen)


async def send(running: Running, events: list[Event]) -> None:
    response = await running.component.api.input_room_events(pb.InputRoomEventsRequest(
        events=[input_event(e) for e in events], wait=True))
    assert [r.outcome for r in response.results] == [pb.INPUT_OUTCOME_ACCEPTED] * len(events), response


async def test_latest_events_and_state_from_memory_match_the_database(running: Running) -> None:
    component = running.component
    assert component.storage.sole_writer
    # The same database read by a room server that keeps nothing of it.
    reference = Queries(RoomserverDatabase(component.database))
    room = TestRoom("10", creator=ALICE)
    room.join(BOB)
    await send(running, room.events)
    request = pb.QueryLatestEventsAndStateRequest(room_id=room.room_id, state_to_fetch=WANTED)

    async def check(*, from_memory: bool) -> pb.QueryLatestEventsAndStateResponse:
        with counting_statements(running) as statements:
            answer = await component.api.query_latest_events_and_state(request)
        assert answer == await reference.query_latest_events_and_state(request)
        assert list(answer.latest_event_ids) == room.latest
        assert answer.depth == room.by_id[room.latest[0]].depth + 1
        if from_memory:
            assert statements == [], "answered from the database"
        return answer

    await check(from_memory=False)  # the first answer for this state reads it
    await check(from_memory=True)

    # New events move the extremities; the state is still the one read.
    room.message(ALICE, "one")
    room.message(BOB, "two")
    await send(running, room.events[-2:])
    await check(from_memory=True)

    # A state change is a new snapshot: read once, then from memory.
    name = room.set_state(NAME, {"name": "Named"}, sender=ALICE)
    await send(running, [name])
    answer = await check(from_memory=False)
    assert name.event_id in [p.event_id for p in answer.state_events]
    await check(from_memory=True)

    # A redacted state event is answered redacted, though the state did not change.
    redaction = room.redact(ALICE, name.event_id)
    await send(running, [redaction])
    answer = await check(from_memory=False)
    named = next(p for p in answer.state_events if p.event_id == name.event_id)
    assert json.loads(named.pdu_json)["content"] == {}
    await check(from_memory=True)

    # A rejected event changes nothing.
    intruder = room.message("@mallory:test", "let me in", advance=False)
    response = await component.api.input_room_events(pb.InputRoomEventsRequest(
        events=[input_event(intruder)], wait=True))
    assert response.results[0].outcome == pb.INPUT_OUTCOME_REJECTED
    await check(from_memory=True)


async def test_a_failed_batch_leaves_no_stale_room_in_memory(running: Running) -> None:
    component = running.component
    reference = Queries(RoomserverDatabase(component.database))
    room = TestRoom("12", creator=ALICE)
    await send(running, room.events)
    request = pb.QueryLatestEventsAndStateRequest(room_id=room.room_id, state_to_fetch=WANTED)
    await component.api.query_latest_events_and_state(request)

    fine = room.message(ALICE, "fine")
    doomed = room.set_state(NAME, {"name": "doomed"}, sender=ALICE, advance=False)
    # After the failed event in the same batch: the room as the batch left it.
    after = room.message(ALICE, "after")
    processor = component.processor
    real_advance = processor._advance_room

    async def explode(*args: object, **kwargs: object) -> object:
        failing = args[2]
        if isinstance(failing, Event) and failing.event_id == doomed.event_id:
            raise RuntimeError("disk on fire")
        return await real_advance(*args, **kwargs)  # type: ignore[arg-type]

    real_process = processor._process_records

    async def query_first(values: object, *, isolate: bool) -> object:
        if isolate:
            # Between the failed run and the one event by event: the room as
            # committed before the batch is in memory again.
            await component.api.query_latest_events_and_state(request)
            assert component.storage.cached_room(room.room_id) is not None
        return await real_process(values, isolate=isolate)  # type: ignore[arg-type]

    processor._advance_room = explode  # type: ignore[method-assign,assignment]
    processor._process_records = query_first  # type: ignore[method-assign,assignment]
    try:
        response = await component.api.input_room_events(pb.InputRoomEventsRequest(
            events=[input_event(fine), input_event(doomed), input_event(after)], wait=True))
    finally:
        processor._advance_room = real_advance  # type: ignore[method-assign]
        processor._process_records = real_process  # type: ignore[method-assign]
    assert [r.outcome for r in response.results] == [
        pb.INPUT_OUTCOME_ACCEPTED, pb.INPUT_OUTCOME_INVALID, pb.INPUT_OUTCOME_ACCEPTED]
    answer = await component.api.query_latest_events_and_state(request)
    assert list(answer.latest_event_ids) == [after.event_id]
    assert answer == await reference.query_latest_events_and_state(request)


async def test_a_fork_reads_the_rows_it_needs_with_the_batch(running: Running) -> None:
    """An event built on an older extremity (as concurrent sends are) leaves
    the newer one an extremity too: its row comes with the batch's one read
    of event rows, from the extremities kept in memory."""
    room = TestRoom("10", creator=ALICE)
    await send(running, room.events)
    late = room.message(ALICE, "built before the other", advance=False)
    first = room.message(ALICE, "input first")
    await send(running, [first])
    with counting_statements(running) as statements:
        # A client's send (with its transaction ID): the input call looks nothing up.
        response = await running.component.api.input_room_events(pb.InputRoomEventsRequest(
            events=[input_event(late, transaction_id=(ALICE, "DEVICE", "txn1"))], wait=True))
    assert response.results[0].outcome == pb.INPUT_OUTCOME_ACCEPTED
    event_reads = [s for s in statements if s.startswith("SELECT roomserver_events.")]
    assert len(event_reads) == 1, "\n".join(event_reads)
    answer = await running.component.api.query_latest_events_and_state(
        pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert sorted(answer.latest_event_ids) == sorted([first.event_id, late.event_id])


async def test_a_whole_big_state_is_not_kept(running: Running) -> None:
    """Only small answers (a build's auth events) are kept: a room's whole
    state, asked for by GET /state, can be megabytes."""
    room = TestRoom("10", creator=ALICE)
    for i in range(STATE_ANSWER_MAX_EVENTS):
        room.join(f"@user{i}:test")
    await send(running, room.events)
    everything = pb.QueryLatestEventsAndStateRequest(room_id=room.room_id)
    first = await running.component.api.query_latest_events_and_state(everything)
    assert len(first.state_events) > STATE_ANSWER_MAX_EVENTS
    with counting_statements(running) as statements:
        again = await running.component.api.query_latest_events_and_state(everything)
    assert again == first
    assert statements, "a whole big state was kept in memory"


async def test_whether_a_server_is_joined_is_answered_from_memory_and_follows_memberships(
        running: Running) -> None:
    component = running.component
    reference = Queries(RoomserverDatabase(component.database))
    room = TestRoom("10", creator=ALICE)
    room.join(BOB)
    await send(running, room.events)

    async def joined(server_name: str, *, from_memory: bool) -> bool:
        request = pb.QueryLatestEventsAndStateRequest(room_id=room.room_id, state_to_fetch=WANTED,
                                                      joined_server_name=server_name)
        with counting_statements(running) as statements:
            answer = await component.api.query_latest_events_and_state(request)
        assert answer.server_joined == (await reference.query_latest_events_and_state(request)).server_joined
        if from_memory:
            assert statements == [], "answered from the database"
        return answer.server_joined

    assert await joined("test", from_memory=False) is True
    assert await joined("test", from_memory=True) is True  # every local join asks this
    assert await joined("elsewhere", from_memory=False) is False
    assert await joined("elsewhere", from_memory=True) is False
    # A join of the other server's user: "not joined" is no longer known.
    carol = "@carol:elsewhere"
    room.join(carol)
    await send(running, room.events[-1:])
    assert await joined("elsewhere", from_memory=False) is True
    assert await joined("test", from_memory=True) is True  # a join leaves "joined" as it was
    # Its last user leaves: "joined" is no longer known either.
    room.leave(carol)
    await send(running, room.events[-1:])
    assert await joined("elsewhere", from_memory=False) is False
    # Local members leave one after the other: the last one's leave is seen.
    room.leave(BOB)
    await send(running, room.events[-1:])
    assert await joined("test", from_memory=False) is True
    room.leave(ALICE)
    await send(running, room.events[-1:])
    assert await joined("test", from_memory=False) is False


async def test_a_room_server_sharing_its_database_asks_it_whether_a_server_is_joined(running: Running) -> None:
    component = running.component
    room = TestRoom("10", creator=ALICE)
    await send(running, room.events)
    request = pb.QueryLatestEventsAndStateRequest(room_id=room.room_id, state_to_fetch=WANTED,
                                                  joined_server_name="test")
    assert (await component.api.query_latest_events_and_state(request)).server_joined
    component.storage.stop_sole_writing()
    # Another instance makes the last local member leave, straight in the database.
    async with component.database.transaction() as conn:
        await conn.exec_driver_sql("UPDATE roomserver_membership SET membership = 'leave'")
    assert not await component.storage.server_joined(
        await _room_record(component.storage, room.room_id), "test")


async def _room_record(storage: RoomserverDatabase, room_id: str) -> RoomRecord:
    async with storage.reading() as txn:
        record = await storage.room_by_id(txn, room_id)
    assert record is not None
    return record


async def test_an_answer_read_before_a_membership_commit_is_not_kept(running: Running) -> None:
    storage = running.component.storage
    room = TestRoom("10", creator=ALICE)
    room.join(BOB)
    await send(running, room.events)
    async with storage.reading() as txn:
        record = await storage.room_by_id(txn, room.room_id)  # the read's snapshot begins
        assert record is not None
        room.leave(BOB)
        room.leave(ALICE)
        await send(running, room.events[-2:])  # no local member any more
        # What a read whose snapshot is from before the leaves answers (on
        # SQLite a read keeps one snapshot): "joined", not to be kept.
        with mock.patch.object(membership_t, "select_server_joined", mock.AsyncMock(return_value=True)):
            assert await storage.server_joined(record, "test", txn) is True
    assert await storage.server_joined(await _room_record(storage, room.room_id), "test") is False
