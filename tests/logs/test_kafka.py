"""What only the Kafka backend has, against a Tansu broker: the idempotence
probe, topic creation, and the consumer runner over a real consumer group."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import AIOKafkaProducer

from common.consumer import KeyedConsumerRunner
from common.log import LogRecord, RebalancingConsumer
from common.logs import KafkaLog

pytestmark = pytest.mark.kafka


@pytest.fixture
async def kafka_log(tansu_broker: str) -> AsyncIterator[KafkaLog]:
    log = KafkaLog(tansu_broker, "myelin-test", partitions=3, topics=[], session_timeout_ms=500,
                   heartbeat_interval_ms=100, retention_bytes=10_000_000)
    await log.start()
    yield log
    await log.close()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


async def idempotent_send_works(bootstrap: str) -> bool:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                request_timeout_ms=3000)
    try:
        await producer.start()
        await asyncio.wait_for(producer.send_and_wait(unique("probe"), b"v", key=b"k"), 5)
        return True
    except Exception:
        return False
    finally:
        # The sender task's failure, if any, surfaces again here.
        with contextlib.suppress(Exception):
            await producer.stop()


async def test_idempotence_is_used_exactly_when_the_broker_supports_it(
    kafka_log: KafkaLog, tansu_broker: str
) -> None:
    assert kafka_log.idempotence is await idempotent_send_works(tansu_broker)
    # Either way, appends work.
    record = await kafka_log.append(unique("t"), b"k", b"v")
    assert record.offset == 0


async def test_topics_are_created_with_the_configured_partitions(kafka_log: KafkaLog) -> None:
    topic = unique("parts")
    partitions = {(await kafka_log.append(topic, b"!room%d:x" % i, b"v")).partition for i in range(40)}
    assert partitions == {0, 1, 2}
    # Creating it again (another process starting) is not an error.
    other = KafkaLog(kafka_log.bootstrap_servers, "other", partitions=3, topics=[topic])
    await other.start()
    await other.close()


async def test_the_runner_commits_what_it_handled_to_the_group(kafka_log: KafkaLog) -> None:
    topic, group = unique("runner"), unique("g")
    for i in range(30):
        await kafka_log.append(topic, b"!room%d:x" % (i % 3), b"%d" % i)
    seen: dict[bytes, list[int]] = {}
    all_seen = asyncio.Event()

    async def handle(record: LogRecord) -> None:
        seen.setdefault(record.key, []).append(int(record.value))
        if sum(map(len, seen.values())) == 30:
            all_seen.set()

    runner = KeyedConsumerRunner(kafka_log, group, [topic], handle, fetch_timeout=0.2, commit_interval=0.05)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(runner.run())
        await runner.ready.wait()
        await asyncio.wait_for(all_seen.wait(), 10)
        runner.stop()

    assert seen == {b"!room%d:x" % r: list(range(r, 30, 3)) for r in range(3)}
    assert sum(runner.committed.values()) == 30
    # A new member of the group starts after everything the runner handled.
    await kafka_log.append(topic, b"!room0:x", b"30")
    consumer = await kafka_log.consumer(group, [topic])
    records: list[LogRecord] = []
    async with asyncio.timeout(10):
        while not records:
            records.extend(await consumer.fetch(timeout=0.5))
    await consumer.close()
    assert [r.value for r in records] == [b"30"]


async def test_a_second_member_takes_partitions_without_sharing_a_room(kafka_log: KafkaLog) -> None:
    topic, group = unique("rebalance"), unique("g")
    for i in range(120):
        await kafka_log.append(topic, b"!room%d:x" % (i % 6), b"%d" % i)
    second_log = KafkaLog(kafka_log.bootstrap_servers, "second", partitions=3, topics=[],
                          session_timeout_ms=500, heartbeat_interval_ms=100)
    await second_log.start()
    in_hand: dict[bytes, str] = {}
    handled: list[tuple[str, bytes, int]] = []
    everything = asyncio.Event()
    revoked = asyncio.Event()

    def handler(member: str) -> Callable[[LogRecord], Awaitable[None]]:
        async def handle(record: LogRecord) -> None:
            if member == "first" and len(handled) >= 12:
                # Hold the rest until the second member's arrival takes partitions away.
                await revoked.wait()
            assert record.key not in in_hand, f"{member} and {in_hand[record.key]} both hold {record.key!r}"
            in_hand[record.key] = member
            await asyncio.sleep(0.01)
            handled.append((member, record.key, int(record.value)))
            del in_hand[record.key]
            if len({value for _, _, value in handled}) == 120:
                everything.set()
        return handle

    first = KeyedConsumerRunner(kafka_log, group, [topic], handler("first"), fetch_timeout=0.2, commit_interval=0.05)
    second = KeyedConsumerRunner(second_log, group, [topic], handler("second"), fetch_timeout=0.2,
                                 commit_interval=0.05)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(first.run())
            await first.ready.wait()
            consumer = first._consumer
            assert isinstance(consumer, RebalancingConsumer) and consumer.on_revoked is not None
            release = consumer.on_revoked

            async def on_revoked(partitions: frozenset[tuple[str, int]]) -> None:
                revoked.set()
                await release(partitions)

            consumer.on_revoked = on_revoked
            tasks.create_task(second.run())
            await asyncio.wait_for(everything.wait(), 15)
            first.stop()
            second.stop()
    finally:
        await second_log.close()

    # Every record once, each room in order, and the second member got a share.
    for room in range(6):
        values = [value for _, key, value in handled if key == b"!room%d:x" % room]
        assert values == list(range(room, 120, 6))
    assert {member for member, _, _ in handled} == {"first", "second"}
