"""KeyedConsumerRunner: order per key, parallelism across keys, poison
records, and a commit watermark that never passes an unhandled record."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from common.consumer import KeyedConsumerRunner
from common.log import LogConsumer, LogRecord, PositionLost
from common.logs.embedded import EmbeddedLog, partition_for_key


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EmbeddedLog]:
    opened = EmbeddedLog(tmp_path / "log", partitions=2)
    await opened.start()
    yield opened
    await opened.close()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    # Polls: the conditions are about the runner's internals, which signal nothing.
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if condition():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


async def run_until(runner: KeyedConsumerRunner, condition: Callable[[], bool]) -> None:
    """Runs the runner in a TaskGroup, as a component would, until ``condition``."""
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(runner.run())
        await runner.ready.wait()
        await eventually(condition)
        runner.stop()


def make_runner(log: EmbeddedLog, handler: Callable[[LogRecord], Awaitable[None]], **options: object) -> KeyedConsumerRunner:
    return KeyedConsumerRunner(log, "g", ["t"], handler, fetch_timeout=0.2, commit_interval=0.02, **options)  # type: ignore[arg-type]


async def test_one_key_in_order_many_keys_in_parallel(log: EmbeddedLog) -> None:
    rooms = [b"!room%d:x" % i for i in range(6)]
    for i in range(25):
        for room in rooms:
            await log.append("t", room, b"%d" % i)
    seen: dict[bytes, list[int]] = defaultdict(list)
    running: dict[bytes, int] = defaultdict(int)
    max_parallel = 0
    rng = random.Random(7)

    async def handle(record: LogRecord) -> None:
        nonlocal max_parallel
        running[record.key] += 1
        assert running[record.key] == 1, "two handlers ran for one key at once"
        max_parallel = max(max_parallel, sum(running.values()))
        await asyncio.sleep(rng.random() * 0.003)
        seen[record.key].append(int(record.value))
        running[record.key] -= 1

    runner = make_runner(log, handle, concurrency=4)
    await run_until(runner, lambda: sum(map(len, seen.values())) == 150)

    assert all(seen[room] == list(range(25)) for room in rooms)
    assert 1 < max_parallel <= 4
    consumer = await log.consumer("g", ["t"])
    assert list(await consumer.fetch(timeout=0)) == []  # everything was committed
    await consumer.close()


async def test_a_poison_record_is_reported_and_skipped(log: EmbeddedLog) -> None:
    for i in range(5):
        await log.append("t", b"!bad:x", b"bad %d" % i)
        await log.append("t", b"!good:x", b"good %d" % i)
    handled: list[bytes] = []
    poisoned: list[tuple[bytes, str]] = []

    async def handle(record: LogRecord) -> None:
        if record.value == b"bad 2":
            raise ValueError("malformed event")
        handled.append(record.value)

    async def on_poison(record: LogRecord, exc: Exception) -> None:
        poisoned.append((record.value, str(exc)))

    runner = make_runner(log, handle, on_poison=on_poison)
    await run_until(runner, lambda: len(handled) == 9)

    assert poisoned == [(b"bad 2", "malformed event")]
    assert [v for v in handled if v.startswith(b"bad")] == [b"bad 0", b"bad 1", b"bad 3", b"bad 4"]
    assert [v for v in handled if v.startswith(b"good")] == [b"good %d" % i for i in range(5)]
    # The skipped record counts as handled: nothing is replayed.
    consumer = await log.consumer("g", ["t"])
    assert list(await consumer.fetch(timeout=0)) == []
    await consumer.close()


async def test_the_commit_never_passes_a_record_still_being_handled(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log", partitions=1)  # every key in one partition
    await log.start()
    slow = await log.append("t", b"!slow:x", b"slow")
    for i in range(20):
        await log.append("t", b"!fast%d:x" % (i % 4), b"fast %d" % i)
    release = asyncio.Event()
    handled: list[bytes] = []

    async def handle(record: LogRecord) -> None:
        if record.key == b"!slow:x":
            await release.wait()
        handled.append(record.value)

    runner = make_runner(log, handle)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(runner.run())
        await eventually(lambda: len(handled) == 20)
        await asyncio.sleep(0.1)  # several commit intervals pass
        # The slow room still holds offset 0: no later offset may be committed.
        assert runner.committed.get(("t", 0), slow.offset) == slow.offset
        release.set()
        await eventually(lambda: runner.committed.get(("t", 0)) == 21)
        runner.stop()
    await log.close()

    # A crash while the slow record was in hand would have replayed from it.
    log = EmbeddedLog(tmp_path / "log", partitions=1)
    await log.start()
    consumer = await log.consumer("g", ["t"])
    assert list(await consumer.fetch(timeout=0)) == []
    await consumer.close()
    await log.close()


async def test_stop_leaves_unstarted_records_uncommitted(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log", partitions=1)
    await log.start()
    for i in range(10):
        await log.append("t", b"!room:x", b"%d" % i)
    started = asyncio.Event()
    finish = asyncio.Event()
    handled: list[int] = []

    async def handle(record: LogRecord) -> None:
        if record.offset == 3:
            started.set()
            await finish.wait()
        handled.append(record.offset)

    runner = make_runner(log, handle)
    async with asyncio.TaskGroup() as tasks:
        running = tasks.create_task(runner.run())
        await started.wait()
        runner.stop()
        await asyncio.sleep(0.05)
        assert not running.done()  # waits for the record in hand
        finish.set()
    assert handled == [0, 1, 2, 3]
    assert runner.committed == {("t", 0): 4}
    await log.close()

    log = EmbeddedLog(tmp_path / "log", partitions=1)
    await log.start()
    consumer = await log.consumer("g", ["t"])
    assert [r.offset for r in await consumer.fetch(timeout=0)] == list(range(4, 10))
    await consumer.close()
    await log.close()


async def test_max_pending_bounds_what_is_fetched_ahead(log: EmbeddedLog) -> None:
    for i in range(50):
        await log.append("t", b"!room%d:x" % (i % 5), b"%d" % i)
    gate = asyncio.Event()
    handled = 0
    most_pending = 0

    async def handle(record: LogRecord) -> None:
        nonlocal handled, most_pending
        most_pending = max(most_pending, runner.pending)
        await gate.wait()
        handled += 1

    runner = make_runner(log, handle, max_pending=8, concurrency=2)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(runner.run())
        await asyncio.sleep(0.2)
        assert runner.pending == 8
        gate.set()
        await eventually(lambda: handled == 50)
        runner.stop()
    assert most_pending <= 8


async def test_a_lost_position_goes_to_the_callback_or_ends_the_run(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log", partitions=1)
    await log.start()
    await log.append("t", b"k", b"a")
    consumer = await log.consumer("g", ["t"])
    await consumer.commit({("t", 0): 50})
    await consumer.close()
    lost: list[PositionLost] = []
    handled: list[bytes] = []

    async def handle(record: LogRecord) -> None:
        handled.append(record.value)

    async def on_position_lost(exc: PositionLost) -> None:
        lost.append(exc)

    runner = make_runner(log, handle, on_position_lost=on_position_lost)
    await run_until(runner, lambda: handled == [b"a"])
    assert [(e.topic, e.partition, e.position) for e in lost] == [("t", 0, 50)]

    consumer = await log.consumer("g2", ["t"])
    await consumer.commit({("t", 0): 50})
    await consumer.close()
    runner = KeyedConsumerRunner(log, "g2", ["t"], handle, fetch_timeout=0.2)
    with pytest.raises(PositionLost):
        await runner.run()
    await log.close()


async def test_cancelling_the_run_commits_what_finished(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log", partitions=1)
    await log.start()
    for i in range(6):
        await log.append("t", b"!room:x", b"%d" % i)
    stuck = asyncio.Event()

    async def handle(record: LogRecord) -> None:
        if record.offset == 3:
            stuck.set()
            await asyncio.Event().wait()  # never finishes

    # A long commit interval: only the final commit can record progress.
    runner = KeyedConsumerRunner(log, "g", ["t"], handle, fetch_timeout=0.2, commit_interval=60)
    running = asyncio.create_task(runner.run())
    await stuck.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert runner.committed == {("t", 0): 3}

    consumer = await log.consumer("g", ["t"])
    assert [r.offset for r in await consumer.fetch(timeout=0)] == [3, 4, 5]
    await consumer.close()
    await log.close()


class RebalancingWrapper:
    """An embedded consumer that a test can take partitions from, as a Kafka
    group does when another member joins."""

    def __init__(self, inner: LogConsumer) -> None:
        self._inner = inner
        self.on_revoked: Callable[[frozenset[tuple[str, int]]], Awaitable[None]] | None = None
        self.commits: list[dict[tuple[str, int], int]] = []

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> Sequence[LogRecord]:
        return await self._inner.fetch(max_records, timeout)

    async def commit(self, positions: dict[tuple[str, int], int]) -> None:
        self.commits.append(dict(positions))
        await self._inner.commit(positions)

    async def close(self) -> None:
        await self._inner.close()


class RebalancingLog:
    def __init__(self, inner: EmbeddedLog) -> None:
        self._inner = inner
        self.consumers: list[RebalancingWrapper] = []

    async def start(self) -> None: ...

    async def append(self, topic: str, key: bytes, value: bytes) -> LogRecord:
        return await self._inner.append(topic, key, value)

    async def consumer(self, group: str, topics: Sequence[str]) -> LogConsumer:
        wrapper = RebalancingWrapper(await self._inner.consumer(group, topics))
        self.consumers.append(wrapper)
        return wrapper

    async def close(self) -> None: ...


async def test_revoked_partitions_are_finished_and_committed_before_they_leave(log: EmbeddedLog) -> None:
    moving, staying = b"!moving:x", b"!stays:x"
    assert partition_for_key(moving, 2) != partition_for_key(staying, 2)
    for i in range(5):
        await log.append("t", moving, b"%d" % i)
        await log.append("t", staying, b"%d" % i)
    moving_partition = partition_for_key(moving, 2)
    first_started, release_first = asyncio.Event(), asyncio.Event()
    handled: dict[bytes, list[int]] = defaultdict(list)

    async def handle(record: LogRecord) -> None:
        if record.key == moving and record.offset == 0:
            first_started.set()
            await release_first.wait()
        handled[record.key].append(int(record.value))

    rebalancing = RebalancingLog(log)
    runner = KeyedConsumerRunner(rebalancing, "g", ["t"], handle, fetch_timeout=0.2, commit_interval=60)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(runner.run())
        await first_started.wait()
        consumer = rebalancing.consumers[0]
        assert consumer.on_revoked is not None
        revoking = asyncio.ensure_future(consumer.on_revoked(frozenset({("t", moving_partition)})))
        await asyncio.sleep(0.1)
        assert not revoking.done()  # the record in hand finishes first
        release_first.set()
        await revoking
        # The partition left after its first record: the rest is the next owner's.
        assert consumer.commits[-1][("t", moving_partition)] == 1
        await eventually(lambda: len(handled[staying]) == 5)
        await asyncio.sleep(0.05)
        assert handled[moving] == [0]
        assert runner.pending == 0
        runner.stop()
    assert handled[staying] == [0, 1, 2, 3, 4]


class DelayRecordingConsumer:
    """A polling consumer (as Kafka's) that records the delays it is given."""

    def __init__(self, inner: LogConsumer) -> None:
        self._inner = inner
        self.delays: list[float] = []

    def set_max_delay(self, seconds: float) -> None:
        self.delays.append(seconds)

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> Sequence[LogRecord]:
        return await self._inner.fetch(max_records, timeout)

    async def commit(self, positions: dict[tuple[str, int], int]) -> None:
        await self._inner.commit(positions)

    async def close(self) -> None:
        await self._inner.close()


class DelayRecordingLog(RebalancingLog):
    async def consumer(self, group: str, topics: Sequence[str]) -> LogConsumer:
        recording = DelayRecordingConsumer(await self._inner.consumer(group, topics))
        self.recorders.append(recording)
        return recording

    def __init__(self, inner: EmbeddedLog) -> None:
        super().__init__(inner)
        self.recorders: list[DelayRecordingConsumer] = []


@pytest.mark.parametrize("max_delay", [None, 0.05])
async def test_the_runner_gives_a_polling_consumer_its_max_delay(log: EmbeddedLog, max_delay: float | None) -> None:
    await log.append("t", b"k", b"v")
    handled = asyncio.Event()

    async def handle(record: LogRecord) -> None:
        handled.set()

    recording = DelayRecordingLog(log)
    runner = KeyedConsumerRunner(recording, "g", ["t"], handle, fetch_timeout=0.1, max_delay=max_delay)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(runner.run())
        await asyncio.wait_for(handled.wait(), 5)
        runner.stop()
    assert recording.recorders[0].delays == ([] if max_delay is None else [max_delay])
