"""The output consumer's write of a run of messages that follows on from
what this process wrote last for the room reads nothing before writing
(SyncDatabase keeps each room's last written event); a run re-sent after
another process sharing the database wrote it is still written once."""

from __future__ import annotations

from common.storage import open_database
from syncapi.storage.database import SyncDatabase
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, Env
from tests.component.syncapi.test_output_batches import (
    consumer_of,
    records_of,
    statements_writing_messages,
    timeline_positions,
)

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


async def reads_before_first_write(env: Env, room: TestRoom, count: int) -> list[str]:
    statements = await statements_writing_messages(env, room, count)
    statements = [s for s in statements if not s.startswith("BEGIN") and "FROM syncapi_stream_position" not in s]
    first_write = next(i for i, s in enumerate(statements) if s.startswith(WRITES))
    return statements[:first_write]


async def test_a_run_following_this_process_write_reads_nothing_first(env: Env) -> None:
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    await env.send_room(room)
    for count in (1, 5):
        assert await reads_before_first_write(env, room, count) == []
    # Without what this process wrote last (say, after a restart): one read.
    env.syncapi.database._last_written.clear()
    reads = await reads_before_first_write(env, room, 1)
    assert len(reads) == 1 and "syncapi_room_positions" in reads[0]
    assert await reads_before_first_write(env, room, 1) == []


async def test_a_run_another_process_wrote_meanwhile_is_written_once(env: Env) -> None:
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    await env.send_room(room)
    first = env.new_room_event(room.message(BOB, "first"))
    await consumer_of(env).handle_records(records_of([first], room.room_id))
    # Another sync API process on the same database writes the next entry
    # (its partition was its own for a while), then the entry comes here
    # again: it follows the event this process wrote last.
    second = env.new_room_event(room.message(BOB, "second"))
    other = SyncDatabase(await open_database(str(env.syncapi.database.database.engine.url), "syncapi"))
    try:
        other_consumer = consumer_of(env)
        other_consumer._db = other
        await other_consumer.handle_records(records_of([second], room.room_id))
    finally:
        await other.close()
    [written_by_other] = await timeline_positions(env, [second.new_room_event.event.event_id])
    # Its write fails on the event stored already; the retry reads and skips it.
    consumer = consumer_of(env)
    await consumer.handle_records(records_of([second], room.room_id))
    third = env.new_room_event(room.message(BOB, "third"))
    await consumer.handle_records(records_of([third], room.room_id))

    ids = [o.new_room_event.event.event_id for o in (first, second, third)]
    positions = await timeline_positions(env, ids)
    assert len(positions) == 3 and positions == sorted(positions)
    assert positions[1] == written_by_other
    async with env.syncapi.database.read() as reader:
        assert await reader.latest_position_in_room(room.room_id, 10**9) is not None
    assert env.syncapi.database._last_written[room.room_id] == ids[2]
