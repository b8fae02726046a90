"""The same log semantics, checked against both backends: the embedded
on-disk log and Kafka (a Tansu broker)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from common.log import Log, LogConsumer, LogRecord, PositionLost, RecordTooLarge
from common.logs import EmbeddedLog, KafkaLog

# Opens a fresh connection to the same log storage (a "restart").
LogOpener = Callable[[], AbstractAsyncContextManager[Log]]


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> LogOpener:
    if request.param == "embedded":

        @asynccontextmanager
        async def open_embedded() -> AsyncIterator[Log]:
            log = EmbeddedLog(tmp_path / "log", partitions=4)
            await log.start()
            try:
                yield log
            finally:
                await log.close()

        return open_embedded

    bootstrap: str = request.getfixturevalue("tansu_broker")

    @asynccontextmanager
    async def open_kafka() -> AsyncIterator[Log]:
        # Small session timeouts: Tansu holds a join open for half of one.
        log = KafkaLog(
            bootstrap, "myelin-test", partitions=4, topics=[],
            session_timeout_ms=500, heartbeat_interval_ms=100,
        )
        await log.start()
        try:
            yield log
        finally:
            await log.close()

    return open_kafka


def unique(name: str) -> str:
    # Kafka tests share one broker: every test gets its own topics and groups.
    return f"{name}-{uuid.uuid4().hex[:10]}"


async def fetch_until(consumer: LogConsumer, count: int, timeout: float = 10.0) -> list[LogRecord]:
    records: list[LogRecord] = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        records.extend(await consumer.fetch(timeout=0.5))
    return records


async def test_records_with_one_key_keep_their_order(open_backend: LogOpener) -> None:
    # The group is new and the records older: it starts at the earliest.
    topic = unique("order")
    async with open_backend() as log:
        appended = []
        for i in range(20):
            for room in (b"!a:x", b"!b:x", b"!c:x"):
                appended.append(await log.append(topic, room, b"%s-%d" % (room, i)))
        # A join can carry a big room's whole state: far above Kafka's 1 MB default.
        big = bytes(range(256)) * (3 * 4096)
        appended.append(await log.append(topic, b"!big:x", big))
        consumer = await log.consumer(unique("g"), [topic])
        records = await fetch_until(consumer, 61)
        await consumer.close()

    assert len(records) == 61
    assert [r.value for r in records if r.key == b"!big:x"] == [big]
    for room in (b"!a:x", b"!b:x", b"!c:x"):
        mine = [r for r in records if r.key == room]
        assert [r.value for r in mine] == [b"%s-%d" % (room, i) for i in range(20)]
        assert len({r.partition for r in mine}) == 1
    assert sorted(records, key=lambda r: (r.partition, r.offset)) == sorted(
        appended, key=lambda r: (r.partition, r.offset)
    )


async def test_offsets_count_up_by_one_per_partition(open_backend: LogOpener) -> None:
    topic = unique("offsets")
    async with open_backend() as log:
        appended = [await log.append(topic, b"!room:x", b"v%d" % i) for i in range(5)]
        with pytest.raises(RecordTooLarge):
            await log.append(topic, b"!room:x", b"x" * (16 * 1024 * 1024))
        other = await log.append(topic, b"!other:x", b"w")

    assert [r.offset for r in appended] == [0, 1, 2, 3, 4]
    assert len({r.partition for r in appended}) == 1
    assert all(r.topic == topic and r.key == b"!room:x" for r in appended)
    assert other.offset == (5 if other.partition == appended[0].partition else 0)


async def test_committed_position_survives_a_restart(open_backend: LogOpener) -> None:
    topic, group = unique("commit"), unique("g")
    async with open_backend() as log:
        appended = [await log.append(topic, b"!room:x", b"v%d" % i) for i in range(10)]
        partition = appended[0].partition
        consumer = await log.consumer(group, [topic])
        assert len(await fetch_until(consumer, 10)) == 10
        # Only the first four were handled before the "crash".
        await consumer.commit({(topic, partition): 4})
        await consumer.close()

    async with open_backend() as log:
        consumer = await log.consumer(group, [topic])
        records = await fetch_until(consumer, 6)
        await consumer.close()
    assert [r.offset for r in records] == [4, 5, 6, 7, 8, 9]
    assert [r.value for r in records] == [b"v%d" % i for i in range(4, 10)]


async def test_fetch_times_out_empty_and_a_waiting_fetch_wakes_on_append(open_backend: LogOpener) -> None:
    topic = unique("wake")
    async with open_backend() as log:
        consumer = await log.consumer(unique("g"), [topic])
        started = time.monotonic()
        assert list(await consumer.fetch(timeout=0.4)) == []
        assert 0.3 <= time.monotonic() - started < 3.0

        started = time.monotonic()
        waiting = asyncio.create_task(consumer.fetch(timeout=10.0))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await log.append(topic, b"k", b"hello")
        records = await asyncio.wait_for(waiting, 8.0)
        elapsed = time.monotonic() - started
        await consumer.close()
    assert [r.value for r in records] == [b"hello"]
    assert elapsed < 5.0


async def test_a_position_past_the_end_is_lost(open_backend: LogOpener) -> None:
    topic, group = unique("lost"), unique("g")
    async with open_backend() as log:
        first = await log.append(topic, b"k", b"a")
        await log.append(topic, b"k", b"b")
        consumer = await log.consumer(group, [topic])
        assert len(await fetch_until(consumer, 2)) == 2
        # As if the log were restored from a copy older than the group's positions.
        await consumer.commit({(topic, first.partition): 100})
        await consumer.close()

        consumer = await log.consumer(group, [topic])
        with pytest.raises(PositionLost) as lost:
            await fetch_until(consumer, 1)
        assert (lost.value.topic, lost.value.partition, lost.value.position) == (topic, first.partition, 100)
        # The consumer moved to the earliest record the log holds.
        records = await fetch_until(consumer, 2)
        await consumer.close()
    assert [r.value for r in records] == [b"a", b"b"]
