"""KeyedConsumerRunner's batch mode: every queued record of a key in one
call, still in order per key; a failing batch is redone record by record so
one poison record costs the others nothing; offsets count only once a batch
returned."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from common.consumer import KeyedConsumerRunner
from common.log import LogRecord
from common.logs.embedded import EmbeddedLog


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EmbeddedLog]:
    opened = EmbeddedLog(tmp_path / "log", partitions=2)
    await opened.start()
    yield opened
    await opened.close()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


def make_runner(log: EmbeddedLog, batch_handler: Callable[[Sequence[LogRecord]], Awaitable[None]],
                **options: object) -> KeyedConsumerRunner:
    return KeyedConsumerRunner(log, "g", ["t"], batch_handler=batch_handler, fetch_timeout=0.2,
                               commit_interval=0.02, **options)  # type: ignore[arg-type]


async def run_until(runner: KeyedConsumerRunner, condition: Callable[[], bool]) -> None:
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(runner.run())
        await runner.ready.wait()
        await eventually(condition)
        runner.stop()


async def nothing_left(log: EmbeddedLog) -> bool:
    consumer = await log.consumer("g", ["t"])
    try:
        return list(await consumer.fetch(timeout=0)) == []
    finally:
        await consumer.close()


def test_one_of_handler_and_batch_handler(log: EmbeddedLog) -> None:
    async def handle(record: LogRecord) -> None: ...

    async def handle_batch(records: Sequence[LogRecord]) -> None: ...

    with pytest.raises(ValueError):
        KeyedConsumerRunner(log, "g", ["t"])
    with pytest.raises(ValueError):
        KeyedConsumerRunner(log, "g", ["t"], handle, batch_handler=handle_batch)


async def test_queued_records_of_a_key_come_in_one_call_in_order(log: EmbeddedLog) -> None:
    rooms = [b"!room%d:x" % i for i in range(3)]
    for i in range(30):
        for room in rooms:
            await log.append("t", room, b"%d" % i)
    batches: dict[bytes, list[list[int]]] = defaultdict(list)
    running: dict[bytes, int] = defaultdict(int)

    async def handle(records: Sequence[LogRecord]) -> None:
        key = records[0].key
        assert all(r.key == key for r in records), "a batch mixed keys"
        running[key] += 1
        assert running[key] == 1, "two batches of one key at once"
        await asyncio.sleep(0.005)
        batches[key].append([int(r.value) for r in records])
        running[key] -= 1

    runner = make_runner(log, handle, concurrency=2, max_batch=8)
    await run_until(runner, lambda: sum(len(b) for room in batches.values() for b in room) == 90)

    for room in rooms:
        assert [n for batch in batches[room] for n in batch] == list(range(30))
        assert max(len(batch) for batch in batches[room]) > 1, "nothing was batched"
        assert max(len(batch) for batch in batches[room]) <= 8
    assert await nothing_left(log)


async def test_a_poison_record_in_a_batch_costs_the_others_nothing(log: EmbeddedLog) -> None:
    for i in range(6):
        await log.append("t", b"!room:x", b"%d" % i)
    calls: list[list[bytes]] = []
    applied: list[bytes] = []
    poisoned: list[tuple[bytes, str]] = []

    async def handle(records: Sequence[LogRecord]) -> None:
        calls.append([r.value for r in records])
        if any(r.value == b"3" for r in records):
            raise ValueError("malformed event")
        applied.extend(r.value for r in records)

    async def on_poison(record: LogRecord, exc: Exception) -> None:
        poisoned.append((record.value, str(exc)))

    runner = make_runner(log, handle, on_poison=on_poison)
    await run_until(runner, lambda: len(applied) == 5)

    assert poisoned == [(b"3", "malformed event")]
    assert applied == [b"0", b"1", b"2", b"4", b"5"]
    # The failed batch held every record; then each was redone alone, in order.
    assert calls[0] == [b"%d" % i for i in range(6)]
    assert calls[1:] == [[b"%d" % i] for i in range(6)]
    assert await nothing_left(log)


async def test_a_batch_in_hand_holds_back_the_commit(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log", partitions=1)
    await log.start()
    for i in range(3):
        await log.append("t", b"!slow:x", b"slow %d" % i)
    for i in range(10):
        await log.append("t", b"!fast:x", b"fast %d" % i)
    release = asyncio.Event()
    handled: list[bytes] = []

    async def handle(records: Sequence[LogRecord]) -> None:
        if records[0].key == b"!slow:x":
            await release.wait()
        handled.extend(r.value for r in records)

    runner = make_runner(log, handle)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(runner.run())
        await eventually(lambda: len(handled) == 10)
        await asyncio.sleep(0.1)  # several commit intervals
        # The slow room's batch starts at offset 0: nothing later is committed.
        assert runner.committed.get(("t", 0), 0) == 0
        release.set()
        await eventually(lambda: runner.committed.get(("t", 0)) == 13)
        runner.stop()
    await log.close()
