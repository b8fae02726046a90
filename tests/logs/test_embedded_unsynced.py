"""Consumers of the embedded log that read records before their fsync
(``read_unsynced``): they see a record as soon as it is written, others only
once it is durable, and no commit goes past the durable records."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from common.consumer import KeyedConsumerRunner
from common.log import LogRecord
from common.logs.embedded import EmbeddedLog


@contextmanager
def held_fsync(monkeypatch: pytest.MonkeyPatch, loop: asyncio.AbstractEventLoop,
               release: asyncio.Event) -> Iterator[None]:
    """Every fdatasync waits for ``release``."""
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=5)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    try:
        yield
    finally:
        monkeypatch.setattr(os, "fdatasync", real_fdatasync)


async def test_an_unsynced_reader_is_woken_before_the_fsync_and_others_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = EmbeddedLog(tmp_path, partitions=1)
    await log.start()
    early = await log.consumer("early", ["t"])
    early.read_unsynced = True
    durable = await log.consumer("durable", ["t"])
    release = asyncio.Event()
    with held_fsync(monkeypatch, asyncio.get_running_loop(), release):
        early_fetch = asyncio.create_task(early.fetch(timeout=5))
        durable_fetch = asyncio.create_task(durable.fetch(timeout=5))
        await asyncio.sleep(0.01)
        appending = asyncio.create_task(log.append("t", b"k", b"v"))
        records = await asyncio.wait_for(early_fetch, 1)
        assert [r.value for r in records] == [b"v"]
        await asyncio.sleep(0.05)
        # The fsync is held: the append has not returned, the other reader sees nothing.
        assert not appending.done()
        assert not durable_fetch.done()
        assert list(await durable.fetch(timeout=0)) == []
        release.set()
        record = await asyncio.wait_for(appending, 5)
        assert [r.offset for r in await asyncio.wait_for(durable_fetch, 1)] == [record.offset]
    await early.close()
    await durable.close()
    await log.close()


async def test_a_commit_stops_at_the_durable_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = EmbeddedLog(tmp_path, partitions=1)
    await log.start()
    await log.append("t", b"k", b"durable")
    early = await log.consumer("early", ["t"])
    early.read_unsynced = True
    release = asyncio.Event()
    with held_fsync(monkeypatch, asyncio.get_running_loop(), release):
        appending = asyncio.create_task(log.append("t", b"k", b"not yet"))
        records = await asyncio.wait_for(early.fetch(timeout=5), 1)
        assert [r.value for r in records] == [b"durable", b"not yet"]
        # Handled both, but only the first is durable: a crash now could lose
        # the second, and its offset would then be written again.
        await early.commit({("t", 0): 2})
        assert log._group_committed["early"] == {("t", 0): 1}
        release.set()
        await asyncio.wait_for(appending, 5)
    await early.commit({("t", 0): 2})
    assert log._group_committed["early"] == {("t", 0): 2}
    await early.close()
    await log.close()
    # What a restart reads back.
    reopened = EmbeddedLog(tmp_path, partitions=1)
    await reopened.start()
    assert reopened._group_committed["early"] == {("t", 0): 2}
    await reopened.close()


async def test_a_runner_reading_unsynced_handles_a_record_during_its_fsync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = EmbeddedLog(tmp_path, partitions=2)
    await log.start()
    handled: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(records: Sequence[LogRecord]) -> None:
        for record in records:
            handled.put_nowait(record.value)

    early = KeyedConsumerRunner(log, "early", ["t"], batch_handler=handle, read_unsynced=True)
    durable = KeyedConsumerRunner(log, "durable", ["t"], batch_handler=handle)
    tasks = [asyncio.create_task(early.run()), asyncio.create_task(durable.run())]
    await early.ready.wait()
    await durable.ready.wait()
    release = asyncio.Event()
    with held_fsync(monkeypatch, asyncio.get_running_loop(), release):
        appending = asyncio.create_task(log.append("t", b"room", b"entry"))
        assert await asyncio.wait_for(handled.get(), 1) == b"entry"
        await asyncio.sleep(0.05)
        assert handled.empty()  # the other runner waits for the fsync
        assert not appending.done()
        release.set()
        await asyncio.wait_for(appending, 5)
        assert await asyncio.wait_for(handled.get(), 1) == b"entry"
    early.stop()
    durable.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    # Both committed past the record once it was durable.
    assert early.committed == durable.committed
    assert sum(early.committed.values()) == 1
    await log.close()
