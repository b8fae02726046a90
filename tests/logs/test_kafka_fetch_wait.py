"""The Kafka consumer's fetch wait: short while records flow, long after a
quiet spell (Tansu holds every fetch for the whole wait, see
common/logs/kafka.py), longer for a member given a ``max_delay``; and
records appended by the member's own log handed over from memory, against a
Tansu broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import TopicPartition

from common.log import LogRecord, PollingConsumer
from common.logs import KafkaLog
from common.logs import kafka as kafka_module

pytestmark = pytest.mark.kafka


def _log(bootstrap: str, name: str) -> KafkaLog:
    return KafkaLog(bootstrap, name, partitions=1, topics=[], session_timeout_ms=500, heartbeat_interval_ms=100)


@pytest.fixture
async def kafka_log(tansu_broker: str) -> AsyncIterator[KafkaLog]:
    log = _log(tansu_broker, "myelin-test")
    await log.start()
    yield log
    await log.close()


@pytest.fixture
async def other_process(tansu_broker: str) -> AsyncIterator[KafkaLog]:
    """A second connection: what it appends reaches ``kafka_log``'s members by fetch only."""
    log = _log(tansu_broker, "myelin-test-other")
    await log.start()
    yield log
    await log.close()


def _fetcher_wait(consumer: kafka_module.KafkaConsumer) -> int:
    # What aiokafka puts in its next fetch requests (the attribute the
    # consumer sets: an aiokafka that renamed it fails here).
    wait: int = consumer._consumer._fetcher._fetch_max_wait_ms
    return wait


async def _fetch_some(consumer: kafka_module.KafkaConsumer, timeout: float = 5.0) -> list[LogRecord]:
    got: list[LogRecord] = []
    while not got:
        got = list(await consumer.fetch(timeout=timeout))
    return got


async def test_fetches_wait_briefly_while_records_flow_and_long_when_quiet(
    kafka_log: KafkaLog, other_process: KafkaLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka_module, "QUIET_BEFORE_IDLE_S", 0.3)
    topic = f"wait-{uuid.uuid4().hex[:10]}"
    await other_process.append(topic, b"k", b"first")
    consumer = await kafka_log.consumer(f"g-{uuid.uuid4().hex[:8]}", [topic])
    try:
        assert _fetcher_wait(consumer) == kafka_module.IDLE_FETCH_WAIT_MS
        assert [r.value for r in await _fetch_some(consumer)] == [b"first"]
        assert _fetcher_wait(consumer) == kafka_module.ACTIVE_FETCH_WAIT_MS

        # Still within the quiet spell: an empty fetch keeps the short wait.
        assert list(await consumer.fetch(timeout=0.05)) == []
        assert _fetcher_wait(consumer) == kafka_module.ACTIVE_FETCH_WAIT_MS

        await asyncio.sleep(0.35)
        assert list(await consumer.fetch(timeout=0.05)) == []
        assert _fetcher_wait(consumer) == kafka_module.IDLE_FETCH_WAIT_MS

        # A record after the quiet spell still arrives, and brings the short wait back.
        await other_process.append(topic, b"k", b"second")
        assert [r.value for r in await _fetch_some(consumer)] == [b"second"]
        assert _fetcher_wait(consumer) == kafka_module.ACTIVE_FETCH_WAIT_MS
        assert consumer.local_records == 0
    finally:
        await consumer.close()


async def test_a_member_with_a_max_delay_fetches_with_that_wait(kafka_log: KafkaLog, other_process: KafkaLog) -> None:
    topic = f"delay-{uuid.uuid4().hex[:10]}"
    await other_process.append(topic, b"k", b"first")
    consumer = await kafka_log.consumer(f"g-{uuid.uuid4().hex[:8]}", [topic])
    try:
        assert isinstance(consumer, PollingConsumer)
        consumer.set_max_delay(0.05)
        assert _fetcher_wait(consumer) == kafka_module.IDLE_FETCH_WAIT_MS
        assert [r.value for r in await _fetch_some(consumer)] == [b"first"]
        assert _fetcher_wait(consumer) == 50
        # Longer than the idle wait: that is the idle wait too; bounded.
        consumer.set_max_delay(60.0)
        assert _fetcher_wait(consumer) == kafka_module.MAX_FETCH_WAIT_MS
        assert consumer.idle_wait_ms == kafka_module.MAX_FETCH_WAIT_MS
    finally:
        await consumer.close()


async def test_own_records_are_handed_over_at_once_in_order_and_once(
    kafka_log: KafkaLog, other_process: KafkaLog
) -> None:
    topic = f"local-{uuid.uuid4().hex[:10]}"
    await other_process.append(topic, b"k", b"a")  # before the member joins: comes by fetch
    consumer = await kafka_log.consumer(f"g-{uuid.uuid4().hex[:8]}", [topic])
    try:
        assert [r.value for r in await _fetch_some(consumer)] == [b"a"]
        await asyncio.sleep(0.4)  # idle: a fetch now waits IDLE_FETCH_WAIT_MS in the broker
        consumer._set_fetch_wait(1000)  # so that a record by fetch would take a second
        loop = asyncio.get_running_loop()
        fetching = asyncio.ensure_future(consumer.fetch(timeout=5.0))
        await asyncio.sleep(0.05)  # the fetch is waiting
        started = loop.time()
        appended = [await kafka_log.append(topic, b"k", value) for value in (b"b", b"c")]
        got = list(await fetching)
        got += [r for r in await consumer.fetch(timeout=0.01)]
        assert loop.time() - started < 0.9  # a fetch would have waited a second
        assert got == appended
        assert consumer.local_records == 2
        # Then one from elsewhere, by fetch, after the own ones: no duplicates, no gap.
        await other_process.append(topic, b"k", b"d")
        await kafka_log.append(topic, b"k", b"e")
        rest: list[LogRecord] = []
        while len(rest) < 2:
            rest += await _fetch_some(consumer)
        assert [(r.offset, r.value) for r in rest] == [(3, b"d"), (4, b"e")]
        assert list(await consumer.fetch(timeout=1.2)) == []
        assert consumer._local_bytes == 0 and not consumer._local
    finally:
        await consumer.close()


async def test_own_records_of_a_partition_the_member_does_not_hold_come_by_fetch(
    kafka_log: KafkaLog, other_process: KafkaLog
) -> None:
    topic = f"notmine-{uuid.uuid4().hex[:10]}"
    await kafka_log.append(topic, b"k", b"x")
    # A member of other_process (another process) reads what kafka_log appends.
    consumer = await other_process.consumer(f"g-{uuid.uuid4().hex[:8]}", [topic])
    try:
        await kafka_log.append(topic, b"k", b"y")
        got: list[LogRecord] = []
        while len(got) < 2:
            got += await _fetch_some(consumer)
        assert [r.value for r in got] == [b"x", b"y"]
        assert consumer.local_records == 0
    finally:
        await consumer.close()


async def test_quiet_topics_of_a_flowing_member_are_paused_but_still_swept(
    kafka_log: KafkaLog, other_process: KafkaLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka_module, "QUIET_BEFORE_IDLE_S", 0.3)
    flowing, quiet = f"flow-{uuid.uuid4().hex[:8]}", f"quiet-{uuid.uuid4().hex[:8]}"
    await other_process.append(quiet, b"k", b"before")
    consumer = await kafka_log.consumer(f"g-{uuid.uuid4().hex[:8]}", [flowing, quiet])
    got: list[LogRecord] = []
    paused_seen: set[str] = set()

    async def read() -> None:
        while True:
            got.extend(await consumer.fetch(timeout=0.5))
            paused_seen.update(tp.topic for tp in consumer._consumer.paused())

    reader = asyncio.create_task(read())
    try:
        for i in range(40):  # 0.8 s of records in one topic only
            await other_process.append(flowing, b"k", b"%d" % i)
            await asyncio.sleep(0.02)
        assert quiet in paused_seen
        await other_process.append(quiet, b"k", b"while flowing")
        await other_process.append(flowing, b"k", b"more")
        for _ in range(500):  # up to ~5 s
            if any(r.value == b"while flowing" for r in got):
                break
            await asyncio.sleep(0.01)
        values = [r.value for r in got]
        assert b"before" in values and b"while flowing" in values
        assert [v for v in values if v not in (b"before", b"while flowing", b"more")] == [b"%d" % i for i in range(40)]
        await asyncio.sleep(0.5)  # quiet everywhere: one idle wait covers both topics
        paused_seen.clear()
        await asyncio.sleep(0.6)
        assert consumer._consumer.paused() == set()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await consumer.close()


async def test_own_records_beyond_the_memory_bound_come_by_fetch(
    kafka_log: KafkaLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"bound-{uuid.uuid4().hex[:10]}"
    consumer = await kafka_log.consumer(f"g-{uuid.uuid4().hex[:8]}", [topic])
    try:
        first = await kafka_log.append(topic, b"k", b"first")
        assert await _fetch_some(consumer) == [first]  # the member has a position now
        monkeypatch.setattr(kafka_module, "MAX_LOCAL_BYTES", 20)
        appended = [await kafka_log.append(topic, b"k", b"%010d" % i) for i in range(4)]
        assert consumer._local_bytes <= 20
        got: list[LogRecord] = []
        while len(got) < 4:
            got += await _fetch_some(consumer)
        assert got == appended
        # The first of the four fitted (11 bytes); the rest came by fetch ("first"
        # too: a new group's position is found by the first fetch).
        assert consumer.local_records == 1
        assert consumer._local_bytes == 0
    finally:
        await consumer.close()


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the time allowed")


async def test_a_partition_memory_covers_is_not_fetched_yet_others_records_still_come(
    kafka_log: KafkaLog, other_process: KafkaLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka_module, "COVERED_CHECK_S", 0.2)
    topic = f"covered-{uuid.uuid4().hex[:10]}"
    consumer = await kafka_log.consumer(f"g-{uuid.uuid4().hex[:8]}", [topic])
    partition = TopicPartition(topic, 0)
    got: list[LogRecord] = []
    paused_while_flowing: list[bool] = []

    async def read() -> None:
        while True:
            got.extend(await consumer.fetch(timeout=0.5))
            paused_while_flowing.append(partition in consumer._consumer.paused())

    reader = asyncio.create_task(read())
    try:
        first = await kafka_log.append(topic, b"k", b"first")  # the first comes by fetch (no position yet)
        await _until(lambda: first in got)
        own = [await kafka_log.append(topic, b"k", b"%d" % i) for i in range(5)]
        await _until(lambda: all(r in got for r in own))
        # Every record since came from memory, and the partition is left out of fetches.
        assert consumer.local_records >= 5
        await asyncio.sleep(0.05)
        assert partition in consumer._consumer.paused()
        # A record memory never sees still comes: the check of where the
        # partition ends finds it, and the partition is fetched again.
        checks = consumer.covered_checks
        loop = asyncio.get_running_loop()
        started = loop.time()
        foreign = await other_process.append(topic, b"k", b"from elsewhere")
        mine = await kafka_log.append(topic, b"k", b"after it")  # held: it waits for the one before
        await _until(lambda: mine in got)
        assert loop.time() - started < 5.0
        assert consumer.covered_checks > checks
        assert got == [first, *own, foreign, mine]
        assert list(await consumer.fetch(timeout=0.5)) == []
        # Memory covers it again once own records follow on.
        again = await kafka_log.append(topic, b"k", b"again")
        await _until(lambda: again in got)
        await asyncio.sleep(0.05)
        assert partition in consumer._consumer.paused()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await consumer.close()
