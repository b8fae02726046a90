"""The room-server output consumer writes a room's queued timeline entries
in one transaction, in order; an entry that does not follow on (a gap) sends
the run through the one-by-one path, which rebuilds the room's state."""

from __future__ import annotations

from typing import Any, cast

from myelin.roomserver.v1 import output_log_pb2
from sqlalchemy import event

from common.log import LogRecord
from common.topics import ROOMSERVER_OUTPUT
from roomserver.api import SyncRoomserverAPI
from syncapi.consumers.roomserver import RoomserverOutputConsumer
from tests.builders import TEST_SERVER_NAME, TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, Env


def records_of(outputs: list[output_log_pb2.OutputEvent], room_id: str) -> list[LogRecord]:
    return [LogRecord(ROOMSERVER_OUTPUT.name, 0, offset, room_id.encode(), o.SerializeToString())
            for offset, o in enumerate(outputs)]


def consumer_of(env: Env) -> RoomserverOutputConsumer:
    return RoomserverOutputConsumer(env.syncapi.database, cast(SyncRoomserverAPI, env.roomserver),
                                    env.syncapi.notifier, TEST_SERVER_NAME)


async def timeline_positions(env: Env, event_ids: list[str]) -> list[int]:
    async with env.syncapi.database.read() as reader:
        stored = await reader.events_by_ids(event_ids)
    return [stored[e].stream_pos for e in event_ids if e in stored and not stored[e].state_only]


async def statements_writing_messages(env: Env, room: TestRoom, count: int) -> list[str]:
    """The SQL (white space folded) the output consumer runs to write ``count`` new
    messages by BOB in ``room`` as one run; checks that all of them reached the timeline."""
    outputs = [env.new_room_event(room.message(BOB, f"m{i}")) for i in range(count)]
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()))

    engine = env.syncapi.database.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        await consumer_of(env).handle_records(records_of(outputs, room.room_id))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    ids = [o.new_room_event.event.event_id for o in outputs]
    assert len(await timeline_positions(env, ids)) == count
    return statements


async def test_a_batch_of_entries_is_written_in_order(env: Env) -> None:
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    for i in range(10):
        room.message(BOB if i % 2 else ALICE, f"m{i}")
    outputs = [env.new_room_event(e) for e in room.events]
    await consumer_of(env).handle_records(records_of(outputs, room.room_id))

    ids = [e.event_id for e in room.events]
    positions = await timeline_positions(env, ids)
    assert len(positions) == len(ids) and positions == sorted(positions)
    assert env.roomserver.state_queries == []
    async with env.syncapi.database.read() as reader:
        members = await reader.local_members(room.room_id, TEST_SERVER_NAME)
    assert members == {ALICE, BOB}

    # The same batch again (a replay after a restart) changes nothing.
    await consumer_of(env).handle_records(records_of(outputs, room.room_id))
    assert await timeline_positions(env, ids) == positions


async def test_a_gap_in_a_batch_rebuilds_the_room(env: Env) -> None:
    room = TestRoom("12", creator=ALICE)
    env.roomserver.rooms[room.room_id] = room
    first = [env.new_room_event(e) for e in room.events]
    await consumer_of(env).handle_records(records_of(first, room.room_id))
    missed = room.join(BOB)
    env.new_room_event(missed)  # written by the room server, never seen here
    later = [env.new_room_event(room.message(BOB, f"m{i}")) for i in range(3)]
    await consumer_of(env).handle_records(records_of(later, room.room_id))

    assert env.roomserver.state_queries == [room.room_id]
    later_ids = [o.new_room_event.event.event_id for o in later]
    assert len(await timeline_positions(env, later_ids)) == 3
    async with env.syncapi.database.read() as reader:
        members = await reader.local_members(room.room_id, TEST_SERVER_NAME)
    assert BOB in members
