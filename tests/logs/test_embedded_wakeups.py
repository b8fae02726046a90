"""Whom an append to the embedded log wakes: the consumers waiting on its
topic, at once, and no consumer of another topic."""

from __future__ import annotations

import asyncio
from pathlib import Path

from common.logs.embedded import EmbeddedLog


async def test_an_append_wakes_the_consumers_of_its_topic_only(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path, partitions=2)
    await log.start()
    outputs = await log.consumer("readers", ["output"])
    inputs = await log.consumer("writers", ["input", "other"])
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiting_output = asyncio.create_task(outputs.fetch(timeout=5))
    waiting_input = asyncio.create_task(inputs.fetch(timeout=5))
    await asyncio.sleep(0.01)

    await log.append("output", b"room", b"entry")
    records = await asyncio.wait_for(waiting_output, 1)
    assert [r.value for r in records] == [b"entry"]
    assert loop.time() - started < 1  # woken, not timed out
    # The consumer of other topics was not woken (it would have found nothing).
    assert not inputs.arrived.is_set() and not waiting_input.done()

    await log.append("other", b"room", b"job")
    assert [r.value for r in await asyncio.wait_for(waiting_input, 1)] == [b"job"]
    await outputs.close()
    await inputs.close()
    await log.close()


async def test_a_closed_consumer_is_no_longer_woken(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path, partitions=1)
    await log.start()
    consumer = await log.consumer("g", ["t"])
    await consumer.close()
    await log.append("t", b"k", b"v")
    assert not consumer.arrived.is_set()
    # A new member of the group reads what was appended meanwhile.
    again = await log.consumer("g", ["t"])
    assert [r.value for r in await again.fetch(timeout=1)] == [b"v"]
    await again.close()
    await log.close()
