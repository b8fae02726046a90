"""What the output consumer reads before writing a run of messages: the
room's last applied event and which of the run's events are stored already
come in one statement, whatever the run's length."""

from __future__ import annotations

from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, Env
from tests.component.syncapi.test_output_batches import statements_writing_messages

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


async def statements_of_batch(env: Env, room: TestRoom, count: int) -> list[str]:
    env.syncapi.database._last_written.clear()  # else it need not read at all (test_output_last_written.py)
    return await statements_writing_messages(env, room, count)


async def test_a_run_of_messages_reads_once_before_writing(env: Env) -> None:
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    await env.send_room(room)
    for count in (1, 5):
        statements = [s for s in await statements_of_batch(env, room, count) if not s.startswith("BEGIN")]
        first_write = next(i for i, s in enumerate(statements) if s.startswith(WRITES))
        # (Not counted: the sync API's periodic read of the stream positions.)
        reads_before = [s for s in statements[:first_write] if "FROM syncapi_stream_position" not in s]
        assert len(reads_before) == 1, reads_before
        assert "syncapi_room_positions" in reads_before[0] and "syncapi_events" in reads_before[0]
