"""What only the embedded log has: its files, crash recovery, group commit
and retention."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from common.log import PositionLost
from common.logs import embedded
from common.logs.embedded import EmbeddedLog, encode_record, partition_for_key


def only_segment(directory: Path, topic: str, partition: int) -> Path:
    segments = sorted((directory / "topics" / topic / str(partition)).glob("*.log"))
    assert len(segments) == 1
    return segments[0]


def append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as file:
        file.write(data)


async def read_all(log: EmbeddedLog, group: str, topic: str) -> list[bytes]:
    consumer = await log.consumer(group, [topic])
    records = await consumer.fetch(max_records=10_000, timeout=0)
    await consumer.close()
    return [r.value for r in records]


@pytest.mark.parametrize("damage", ["torn", "bad-crc"])
async def test_recovery_truncates_a_damaged_tail_and_keeps_what_came_before(tmp_path: Path, damage: str) -> None:
    log = EmbeddedLog(tmp_path, partitions=1)
    await log.start()
    for i in range(5):
        await log.append("t", b"k", b"value %d" % i)
    await log.close()

    segment = only_segment(tmp_path, "t", 0)
    sound_size = segment.stat().st_size
    sixth = encode_record(5, b"k", b"value 5")
    if damage == "torn":
        # The crash came in the middle of writing the sixth record.
        append_bytes(segment, sixth[: len(sixth) - 3])
    else:
        append_bytes(segment, sixth[:-1] + bytes([sixth[-1] ^ 0xFF]))

    log = EmbeddedLog(tmp_path, partitions=1)
    await log.start()
    assert segment.stat().st_size == sound_size
    assert await read_all(log, "g", "t") == [b"value %d" % i for i in range(5)]
    # The next append takes the damaged record's offset and is readable after it.
    record = await log.append("t", b"k", b"after the crash")
    assert record.offset == 5
    assert await read_all(log, "g2", "t") == [b"value %d" % i for i in range(5)] + [b"after the crash"]
    await log.close()


async def test_records_survive_a_crash_without_close(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path, partitions=2)
    await log.start()
    appended = [await log.append("t", b"room%d" % i, b"v%d" % i) for i in range(10)]
    # No close(): the process "dies" here, which releases its lock on the
    # directory; what append acknowledged is on disk.
    with pytest.raises(RuntimeError, match="another process"):
        await EmbeddedLog(tmp_path).start()
    assert log._lock_fd is not None
    os.close(log._lock_fd)
    log._lock_fd = None
    reopened = EmbeddedLog(tmp_path, partitions=2)
    await reopened.start()
    consumer = await reopened.consumer("g", ["t"])
    records = await consumer.fetch(max_records=100, timeout=0)
    assert sorted((r.partition, r.offset, r.value) for r in records) == sorted(
        (r.partition, r.offset, r.value) for r in appended
    )
    await reopened.close()
    await log.close()


async def test_concurrent_appends_share_fsyncs(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path, partitions=4)
    await log.start()
    await log.append("t", b"warm", b"up")  # creates the topic
    rounds_before = log.sync_rounds
    records = await asyncio.gather(*(log.append("t", b"room%d" % (i % 10), b"%d" % i) for i in range(200)))
    rounds = log.sync_rounds - rounds_before
    assert 1 <= rounds <= 5
    assert len({(r.partition, r.offset) for r in records}) == 200
    assert len(await read_all(log, "g", "t")) == 201
    await log.close()


async def test_a_group_has_one_member(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    await log.start()
    consumer = await log.consumer("g", ["t"])
    with pytest.raises(RuntimeError):
        await log.consumer("g", ["t"])
    await consumer.close()
    await (await log.consumer("g", ["t"])).close()
    await log.close()


async def test_a_topic_keeps_its_partition_count(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path, partitions=3)
    await log.start()
    record = await log.append("t", b"!room:x", b"v")
    await log.close()
    assert record.partition == partition_for_key(b"!room:x", 3)

    log = EmbeddedLog(tmp_path, partitions=16)
    await log.start()
    assert log.partition_count("t") == 3
    assert (await log.append("t", b"!room:x", b"w")).partition == record.partition
    assert log.partition_count("new") == 16
    await log.close()


async def test_fetch_respects_the_byte_budget_but_returns_at_least_one_record(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path, partitions=1, fetch_max_bytes=1000)
    await log.start()
    await log.append("t", b"k", b"x" * 5000)
    for i in range(20):
        await log.append("t", b"k", b"%03d" % i + b"y" * 97)
    consumer = await log.consumer("g", ["t"])
    first = await consumer.fetch(timeout=0)
    assert [len(r.value) for r in first] == [5000]
    second = await consumer.fetch(timeout=0)
    assert 5 <= len(second) < 20
    assert [r.offset for r in second] == list(range(1, 1 + len(second)))
    rest = await consumer.fetch(max_records=3, timeout=0)
    assert [r.offset for r in rest] == [1 + len(second) + i for i in range(3)]
    await consumer.close()
    await log.close()


async def test_retention_deletes_old_segments_and_reports_lost_positions(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path, partitions=1, segment_bytes=300, retention_bytes=600)
    await log.start()
    behind = await log.consumer("behind", ["t"])
    await behind.commit({("t", 0): 1})
    await behind.close()
    for i in range(60):
        await log.append("t", b"k", b"record %02d" % i + b"." * 40)

    segments = sorted((tmp_path / "topics" / "t" / "0").glob("*.log"))
    assert 2 <= len(segments) <= 4
    total = sum(path.stat().st_size for path in segments)
    assert 600 <= total < 600 + 2 * 300 + 100
    log_start = int(segments[0].stem)
    assert log_start > 1

    # A group that never committed starts at what is left, without an error.
    fresh = await log.consumer("fresh", ["t"])
    assert (await fresh.fetch(timeout=0))[0].offset == log_start
    await fresh.close()

    # A group whose position was deleted hears about it once, then goes on.
    behind = await log.consumer("behind", ["t"])
    with pytest.raises(PositionLost) as lost:
        await behind.fetch(timeout=0)
    assert (lost.value.position, lost.value.log_start) == (1, log_start)
    records = await behind.fetch(max_records=1000, timeout=0)
    assert [r.offset for r in records] == list(range(log_start, 60))
    await behind.close()
    await log.close()

    # Recovery reads a partition that starts past offset 0.
    log = EmbeddedLog(tmp_path, partitions=1)
    await log.start()
    assert (await log.append("t", b"k", b"next")).offset == 60
    await log.close()


async def test_committed_positions_are_written_atomically(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    await log.start()
    consumer = await log.consumer("odd/group name", ["t"])
    await consumer.commit({("t", 0): 3})
    await consumer.commit({("t", 1): 7})
    await consumer.close()
    await log.close()
    assert not list((tmp_path / "groups").glob("*.tmp"))
    # A crash between writing the temporary file and renaming it leaves the old positions.
    (tmp_path / "groups" / "leftover.tmp").write_bytes(b"{half a docu")

    log = EmbeddedLog(tmp_path)
    await log.start()
    assert log._group_committed["odd/group name"] == {("t", 0): 3, ("t", 1): 7}
    assert not (tmp_path / "groups" / "leftover.tmp").exists()
    await log.close()


async def test_an_append_is_visible_only_after_its_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = EmbeddedLog(tmp_path, partitions=1)
    await log.start()
    consumer = await log.consumer("g", ["t"])
    release = asyncio.Event()
    real_fdatasync = os.fdatasync
    loop = asyncio.get_running_loop()

    def slow_fdatasync(fd: int) -> None:
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=5)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    appending = asyncio.create_task(log.append("t", b"k", b"v"))
    await asyncio.sleep(0.05)
    assert list(await consumer.fetch(timeout=0)) == []
    assert not appending.done()
    release.set()
    record = await appending
    monkeypatch.setattr(os, "fdatasync", real_fdatasync)
    assert [r.offset for r in await consumer.fetch(timeout=1)] == [record.offset]
    await consumer.close()
    await log.close()


REPO = Path(__file__).resolve().parents[2]
APPENDER = """
import asyncio, sys
from pathlib import Path
from common.logs.embedded import EmbeddedLog

async def main() -> None:
    log = EmbeddedLog(Path(sys.argv[1]), partitions=4, segment_bytes=int(sys.argv[2]))
    await log.start()
    async def writer(n: int) -> None:
        for i in range(100_000):
            record = await log.append("t", b"room%d" % n, b"%d:%d:" % (n, i) + b"x" * 3000)
            print(record.partition, record.offset, n, i, flush=True)
    await asyncio.gather(*(writer(n) for n in range(8)))

asyncio.run(main())
"""


@pytest.mark.parametrize("segment_bytes", [64 * 1024 * 1024, 20_000])
async def test_every_acknowledged_append_survives_a_killed_process(tmp_path: Path, segment_bytes: int) -> None:
    import signal
    import sys

    directory = tmp_path / "log"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", APPENDER, str(directory), str(segment_bytes),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "gen")])},
    )
    assert process.stdout is not None
    acknowledged: list[tuple[int, int, int, int]] = []
    while len(acknowledged) < 300:
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line, "the appender died before it was killed"
        partition, offset, writer, index = map(int, line.split())
        acknowledged.append((partition, offset, writer, index))
    process.send_signal(signal.SIGKILL)
    await process.wait()

    if segment_bytes < 100_000:
        assert len(list(directory.glob("topics/t/*/*.log"))) > 8  # segments were sealed
    log = EmbeddedLog(directory, partitions=4)
    await log.start()
    consumer = await log.consumer("g", ["t"])
    found = {}
    while batch := await consumer.fetch(max_records=10_000, timeout=0):
        for record in batch:
            writer, index = map(int, record.value.split(b":")[:2])
            found[(record.partition, record.offset)] = (writer, index)
    await consumer.close()
    await log.close()
    for partition, offset, writer, index in acknowledged:
        assert found[(partition, offset)] == (writer, index)
    # Each writer's records are there in order with no gaps.
    for writer in range(8):
        indexes = [i for (w, i) in sorted(found.values()) if w == writer]
        assert indexes == list(range(len(indexes)))


async def write_segments(directory: Path) -> list[Path]:
    log = EmbeddedLog(directory, partitions=1, segment_bytes=200)
    await log.start()
    for i in range(12):
        await log.append("t", b"k", b"record %02d" % i + b"." * 40)
    await log.close()
    segments = sorted((directory / "topics" / "t" / "0").glob("*.log"))
    assert len(segments) >= 3
    # Every sealed segment has its index; the one being written has none.
    assert sorted((directory / "topics" / "t" / "0").glob("*.index")) == [p.with_suffix(".index") for p in segments[:-1]]
    return segments


def damage_second_record(segment: Path) -> int:
    """Flips a byte inside the segment's second record; answers its offset."""
    data = bytearray(segment.read_bytes())
    record_length = len(encode_record(0, b"k", b"record 00" + b"." * 40))
    data[record_length + 30] ^= 0xFF
    segment.write_bytes(bytes(data))
    return int(segment.stem) + 1


async def test_a_restart_reads_indexes_instead_of_scanning_sealed_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    segments = await write_segments(tmp_path)
    scanned: list[Path] = []
    real_scan = embedded._scan_segment

    def counting_scan(segment: embedded._Segment, data: bytes) -> int | None:
        scanned.append(segment.path)
        return real_scan(segment, data)

    monkeypatch.setattr(embedded, "_scan_segment", counting_scan)
    log = EmbeddedLog(tmp_path, partitions=1)
    await log.start()
    assert scanned == [segments[-1]]
    assert await read_all(log, "g", "t") == [b"record %02d" % i + b"." * 40 for i in range(12)]
    await log.close()


async def test_damage_in_an_indexed_segment_is_reported_when_read(tmp_path: Path) -> None:
    segments = await write_segments(tmp_path)
    damage_second_record(segments[1])
    log = EmbeddedLog(tmp_path, partitions=1)
    await log.start()
    consumer = await log.consumer("g", ["t"])
    with pytest.raises(embedded.LogCorrupted):
        await consumer.fetch(max_records=100, timeout=0)
    await consumer.close()
    await log.close()


async def test_recovery_drops_segments_written_after_a_damaged_record(tmp_path: Path) -> None:
    segments = await write_segments(tmp_path)
    for index in (tmp_path / "topics" / "t" / "0").glob("*.index"):
        index.unlink()  # e.g. a crash before the index was written: the scan decides
    damaged_offset = damage_second_record(segments[1])

    log = EmbeddedLog(tmp_path, partitions=1)
    await log.start()
    assert await read_all(log, "g", "t") == [b"record %02d" % i + b"." * 40 for i in range(damaged_offset)]
    assert [p.name for p in sorted((tmp_path / "topics" / "t" / "0").glob("*.log"))] == [
        p.name for p in segments[:2]
    ]
    assert (await log.append("t", b"k", b"next")).offset == damaged_offset
    await log.close()
