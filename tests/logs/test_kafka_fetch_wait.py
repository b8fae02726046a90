"""The Kafka consumer's fetch wait: short while records flow, long after a
quiet spell (Tansu holds every fetch for the whole wait, see
common/logs/kafka.py), against a Tansu broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from common.log import LogRecord
from common.logs import KafkaLog
from common.logs import kafka as kafka_module

pytestmark = pytest.mark.kafka


@pytest.fixture
async def kafka_log(tansu_broker: str) -> AsyncIterator[KafkaLog]:
    log = KafkaLog(tansu_broker, "myelin-test", partitions=1, topics=[], session_timeout_ms=500,
                   heartbeat_interval_ms=100)
    await log.start()
    yield log
    await log.close()


def _fetcher_wait(consumer: kafka_module.KafkaConsumer) -> int:
    # What aiokafka puts in its next fetch requests (the attribute the
    # consumer sets: an aiokafka that renamed it fails here).
    wait: int = consumer._consumer._fetcher._fetch_max_wait_ms
    return wait


async def test_fetches_wait_briefly_while_records_flow_and_long_when_quiet(
    kafka_log: KafkaLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka_module, "QUIET_BEFORE_IDLE_S", 0.3)
    topic = f"wait-{uuid.uuid4().hex[:10]}"
    await kafka_log.append(topic, b"k", b"first")
    consumer = await kafka_log.consumer(f"g-{uuid.uuid4().hex[:8]}", [topic])
    try:
        assert _fetcher_wait(consumer) == kafka_module.IDLE_FETCH_WAIT_MS
        got: list[LogRecord] = []
        while not got:
            got = list(await consumer.fetch(timeout=5.0))
        assert [r.value for r in got] == [b"first"]
        assert _fetcher_wait(consumer) == kafka_module.ACTIVE_FETCH_WAIT_MS

        # Still within the quiet spell: an empty fetch keeps the short wait.
        assert list(await consumer.fetch(timeout=0.05)) == []
        assert _fetcher_wait(consumer) == kafka_module.ACTIVE_FETCH_WAIT_MS

        await asyncio.sleep(0.35)
        assert list(await consumer.fetch(timeout=0.05)) == []
        assert _fetcher_wait(consumer) == kafka_module.IDLE_FETCH_WAIT_MS

        # A record after the quiet spell still arrives, and brings the short wait back.
        await kafka_log.append(topic, b"k", b"second")
        got = []
        while not got:
            got = list(await consumer.fetch(timeout=5.0))
        assert [r.value for r in got] == [b"second"]
        assert _fetcher_wait(consumer) == kafka_module.ACTIVE_FETCH_WAIT_MS
    finally:
        await consumer.close()
