"""The log relay (common/logs/relay.py) over real gRPC and a Tansu broker:
what one process appends reaches another process's consumer as soon as the
broker acknowledged it, instead of after a fetch wait, and still in offset
order, once, alongside what comes by fetch."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from aiokafka import TopicPartition

from common.log import LogRecord
from common.logs import KafkaLog
from common.logs import kafka as kafka_module
from common.logs.relay import add_log_relay, follow_relay

pytestmark = pytest.mark.kafka


def _log(bootstrap: str, name: str) -> KafkaLog:
    return KafkaLog(bootstrap, name, partitions=1, topics=[], session_timeout_ms=500, heartbeat_interval_ms=100)


@dataclass
class Processes:
    appender: KafkaLog  # the room server, say: serves the relay
    reader: KafkaLog  # the sync API, say: follows it
    address: str
    server: grpc.aio.Server


async def _serve_relay(log: KafkaLog, address: str = "127.0.0.1:0") -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    add_log_relay(server, log)
    port = server.add_insecure_port(address)
    await server.start()
    return server, port


@pytest.fixture
async def processes(tansu_broker: str) -> AsyncIterator[Processes]:
    appender, reader = _log(tansu_broker, "myelin-appender"), _log(tansu_broker, "myelin-reader")
    await appender.start()
    await reader.start()
    server, port = await _serve_relay(appender)
    running = Processes(appender, reader, f"127.0.0.1:{port}", server)
    try:
        yield running
    finally:
        await running.server.stop(None)  # a test may have restarted it
        await reader.close()
        await appender.close()


@contextlib.asynccontextmanager
async def following(processes: Processes, topics: list[str]) -> AsyncIterator[None]:
    channel = grpc.aio.insecure_channel(processes.address)
    task = asyncio.ensure_future(follow_relay(processes.reader, channel, topics))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait({task})
        await channel.close()


async def _fetch_until(consumer: kafka_module.KafkaConsumer, count: int, timeout: float) -> list[LogRecord]:
    got: list[LogRecord] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < count and loop.time() < deadline:
        got += await consumer.fetch(timeout=max(0.0, deadline - loop.time()))
    return got


async def _slow_fetching_member(log: KafkaLog, topic: str) -> kafka_module.KafkaConsumer:
    """A member whose fetches wait 3 s in the broker: a record it gets
    sooner came through the relay."""
    consumer = await log.consumer(f"g-{uuid.uuid4().hex[:8]}", [topic])
    consumer.active_wait_ms = consumer.idle_wait_ms = 3000
    consumer._set_fetch_wait(3000)
    return consumer


async def test_an_appended_record_reaches_the_other_process_without_a_fetch_wait(processes: Processes) -> None:
    topic = f"relay-{uuid.uuid4().hex[:10]}"
    await processes.appender.append(topic, b"k", b"before")  # comes by fetch
    consumer = await _slow_fetching_member(processes.reader, topic)
    try:
        assert [r.value for r in await _fetch_until(consumer, 1, 10)] == [b"before"]
        async with following(processes, [topic]):
            await asyncio.sleep(0.2)  # subscribed
            loop = asyncio.get_running_loop()
            started = loop.time()
            appended = [await processes.appender.append(topic, b"k", v) for v in (b"a", b"b", b"c")]
            got = await _fetch_until(consumer, 3, 10)
            assert loop.time() - started < 2.0  # a fetch would have waited 3 s
            assert got == appended
            assert consumer.local_records == 3
    finally:
        await consumer.close()


async def test_relayed_and_fetched_records_come_in_order_and_once(processes: Processes) -> None:
    topic = f"relay-{uuid.uuid4().hex[:10]}"
    other = _log(processes.appender.bootstrap_servers, "myelin-third")
    await other.start()
    await processes.appender.append(topic, b"k", b"before")
    consumer = await _slow_fetching_member(processes.reader, topic)
    try:
        assert len(await _fetch_until(consumer, 1, 10)) == 1
        async with following(processes, [topic]):
            await asyncio.sleep(0.2)
            # Relayed; then one of a process that relays nothing (it comes by
            # fetch); then relayed again, which waits for the one before it.
            first = [await processes.appender.append(topic, b"k", v) for v in (b"a", b"b")]
            got = await _fetch_until(consumer, 2, 10)
            assert got == first and consumer.local_records == 2
            middle = await other.append(topic, b"k", b"c")
            last = await processes.appender.append(topic, b"k", b"d")
            got = await _fetch_until(consumer, 2, 10)
            assert got == [middle, last]
            assert [r.offset for r in first + got] == list(range(first[0].offset, first[0].offset + 4))
            # Nothing twice: the fetch's copies of relayed records are dropped.
            assert list(await consumer.fetch(timeout=0.5)) == []
    finally:
        await consumer.close()
        await other.close()


async def test_only_the_topics_asked_for_are_relayed(processes: Processes) -> None:
    wanted, other = f"relay-{uuid.uuid4().hex[:10]}", f"relay-{uuid.uuid4().hex[:10]}"
    consumer = await _slow_fetching_member(processes.reader, other)
    try:
        await processes.appender.append(other, b"k", b"x")
        assert [r.value for r in await _fetch_until(consumer, 1, 10)] == [b"x"]
        async with following(processes, [wanted]):
            await asyncio.sleep(0.2)
            await processes.appender.append(other, b"k", b"y")
            # Not relayed: after a second it has not come (its fetch waits 3 s).
            assert list(await consumer.fetch(timeout=1.0)) == []
            assert consumer.local_records == 0
    finally:
        await consumer.close()


async def test_the_follower_follows_again_after_the_relay_restarts(processes: Processes) -> None:
    topic = f"relay-{uuid.uuid4().hex[:10]}"
    await processes.appender.append(topic, b"k", b"before")
    consumer = await _slow_fetching_member(processes.reader, topic)
    try:
        assert len(await _fetch_until(consumer, 1, 10)) == 1
        async with following(processes, [topic]):
            await asyncio.sleep(0.2)
            await processes.server.stop(None)
            restarted, port = await _serve_relay(processes.appender, processes.address)
            assert f"127.0.0.1:{port}" == processes.address
            processes.server = restarted
            await asyncio.sleep(1.0)  # the follower's back-off, then it follows again
            appended = await processes.appender.append(topic, b"k", b"after")
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await _fetch_until(consumer, 1, 10) == [appended]
            assert loop.time() - started < 2.0
            assert consumer.local_records == 1
    finally:
        await consumer.close()


async def test_relayed_records_cover_a_partition_until_the_relay_stops(processes: Processes) -> None:
    topic = f"relay-{uuid.uuid4().hex[:10]}"
    await processes.appender.append(topic, b"k", b"before")
    consumer = await _slow_fetching_member(processes.reader, topic)
    partition = TopicPartition(topic, 0)
    try:
        assert len(await _fetch_until(consumer, 1, 10)) == 1
        async with following(processes, [topic]):
            await asyncio.sleep(0.2)
            appended = [await processes.appender.append(topic, b"k", v) for v in (b"a", b"b")]
            assert await _fetch_until(consumer, 2, 10) == appended
            assert consumer.local_records == 2
            await consumer.fetch(timeout=0.05)
            assert partition in consumer._consumer.paused()  # nothing to fetch there
            await processes.server.stop(None)
            for _ in range(100):  # the stream's end reaches the follower
                if not consumer._covered:
                    break
                await asyncio.sleep(0.01)
            assert not consumer._covered
            # Not relayed now: it comes by fetch.
            after = await processes.appender.append(topic, b"k", b"after")
            assert await _fetch_until(consumer, 1, 10) == [after]
            assert partition not in consumer._consumer.paused()
    finally:
        await consumer.close()
