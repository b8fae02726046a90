"""The consumer loop every component runs over a log.

``KeyedConsumerRunner`` fetches batches from a consumer group and hands each
record to a worker for its key (a room ID): one key's records are handled
strictly in log order, different keys run in parallel (at most
``concurrency`` handlers at once, at most ``max_pending`` records fetched
and not yet handled).

It commits, for each partition, the lowest offset not yet fully handled (a
watermark): when a slow room holds offset 10 while other rooms in the same
partition finish 11 to 50, the commit stays at 10, so a crash replays 10 to
50 (handlers are idempotent) and never skips 10.

A handler that raises ``Exception`` for a record has decided the record is
not retryable: the runner logs it, calls ``on_poison(record, exc)`` (to
record the failure somewhere visible) and goes on with the next record of
that key, so one bad event never wedges a room. A handler that wants a retry
retries inside itself.

Batch mode (``batch_handler=``, instead of ``handler``): when a key's worker
gets its turn it takes every record queued for that key (at most
``max_batch``) and awaits ``batch_handler(records)`` once, records in log
order; a busy key thus pays per-handling costs (a database transaction) once
per batch rather than once per record. The offsets of a batch count as
handled only when the call returns. When it raises, the runner cannot know
which record was at fault, so it hands the records over again one by one
(``batch_handler([record])``, in order; handlers are idempotent, so records
the failed call had already applied are harmless to redo), and only a record
that fails alone is poison. So a bad record never costs the others in its
batch.

Usage, inside a TaskGroup the caller owns::

    runner = KeyedConsumerRunner(log, "syncapi", ["roomserver.output"], handle_output)
    tg.create_task(runner.run())
    await runner.ready.wait()      # joined the group
    ...
    runner.stop()                  # run() returns after in-flight handlers finish
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from common.log import Log, LogConsumer, LogRecord, PollingConsumer, PositionLost, RebalancingConsumer
from common.logs.embedded import EmbeddedConsumer

logger = logging.getLogger(__name__)

RecordHandler = Callable[[LogRecord], Awaitable[None]]
BatchHandler = Callable[[Sequence[LogRecord]], Awaitable[None]]
PoisonHandler = Callable[[LogRecord, Exception], Awaitable[None]]
PositionLostHandler = Callable[[PositionLost], Awaitable[None]]

TopicPartition = tuple[str, int]

# Pause after a fetch fails for a reason other than a lost position.
FETCH_RETRY_DELAY = 1.0
# How long a cancelled runner tries to commit what it finished.
FINAL_COMMIT_TIMEOUT = 5.0
# Seconds between offset commits. A commit is a write (on the embedded log a
# file write and two fsyncs, on Kafka a broker round trip) that nobody waits
# for: handling is idempotent, so committing less often only means replaying
# a little more after a crash, never skipping a record. (Kafka's own
# auto-commit interval is 5 s.)
COMMIT_INTERVAL = 1.0


class _PartitionProgress:
    """Which fetched offsets of one partition are not yet handled."""

    def __init__(self) -> None:
        self.unfinished: list[int] = []  # a heap, with finished entries removed lazily
        self.in_flight: set[int] = set()
        self.fetched_end = 0

    def watermark(self) -> int:
        """The lowest offset fetched and not yet handled, or the end of what was fetched."""
        while self.unfinished and self.unfinished[0] not in self.in_flight:
            heapq.heappop(self.unfinished)
        return self.unfinished[0] if self.unfinished else self.fetched_end


class KeyedConsumerRunner:
    """Runs ``handler`` over every record of ``topics`` for consumer group
    ``group``: in order per key, in parallel across keys, committing only what
    is handled. See the module docstring.

    ``on_position_lost`` is awaited when the log no longer holds the group's
    position (the consumer then continues from the earliest record the log
    holds); without it the runner raises ``PositionLost`` out of ``run()``.

    ``read_unsynced``: on the embedded log, records reach the handlers as soon
    as they are written, before their fsync (see common.logs.embedded), for
    handlers whose effects are durable on their own and whose records'
    content the producer keeps until its append returns. Commits still stop
    at the durable records. No effect on Kafka.

    ``max_delay``: see ``common.log.PollingConsumer`` (None: as soon as the
    backend can)."""

    def __init__(
        self,
        log: Log,
        group: str,
        topics: Sequence[str],
        handler: RecordHandler | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        max_batch: int = 100,
        on_poison: PoisonHandler | None = None,
        on_position_lost: PositionLostHandler | None = None,
        concurrency: int = 64,
        max_pending: int = 10_000,
        fetch_max_records: int = 500,
        fetch_timeout: float = 1.0,
        commit_interval: float = COMMIT_INTERVAL,
        read_unsynced: bool = False,
        max_delay: float | None = None,
    ) -> None:
        if concurrency < 1 or max_pending < 1 or max_batch < 1:
            raise ValueError("concurrency, max_pending and max_batch must be positive")
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        self.group = group
        self.topics = list(topics)
        self.ready = asyncio.Event()
        self._log = log
        self._handler = handler
        self._batch_handler = batch_handler
        self._max_batch = max_batch if batch_handler is not None else 1
        self._on_poison = on_poison
        self._on_position_lost = on_position_lost
        self._slots = asyncio.Semaphore(concurrency)
        self._max_pending = max_pending
        self._fetch_max_records = fetch_max_records
        self._fetch_timeout = fetch_timeout
        self._commit_interval = commit_interval
        self._read_unsynced = read_unsynced
        self._max_delay = max_delay
        self._stopping = asyncio.Event()
        self._halting = False
        self._consumer: LogConsumer | None = None
        self._queues: dict[bytes, deque[LogRecord]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._progress: dict[TopicPartition, _PartitionProgress] = {}
        self._pending = 0
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._committed: dict[TopicPartition, int] = {}
        self._fatal: PositionLost | None = None
        # The records each key's worker is handling right now.
        self._handling: dict[bytes, list[LogRecord]] = {}
        # Set (and replaced) whenever a handler returns.
        self._handled = asyncio.Event()
        # The partitions of each revocation, in order (see _fetch_loop).
        self._releases: list[frozenset[TopicPartition]] = []
        # The fetch in flight, which stop() cancels.
        self._fetching: asyncio.Future[Sequence[LogRecord]] | None = None

    @property
    def committed(self) -> dict[TopicPartition, int]:
        """The positions this runner last committed, per (topic, partition)."""
        return dict(self._committed)

    @property
    def pending(self) -> int:
        """Records fetched and not yet handled."""
        return self._pending

    def stop(self) -> None:
        """Asks ``run()`` to stop fetching, let running handlers finish their
        current record, commit, and return. Records fetched but not started are
        left uncommitted for the next run."""
        self._stopping.set()
        if self._fetching is not None and not self._fetching.done():
            self._fetching.cancel()

    async def run(self) -> None:
        """Joins the group, sets ``ready`` and consumes until ``stop()``.
        Cancelling it also stops it: handlers are cancelled mid-record (those
        records stay uncommitted) and what had finished is committed."""
        consumer = await self._log.consumer(self.group, self.topics)
        if self._max_delay is not None and isinstance(consumer, PollingConsumer):
            consumer.set_max_delay(self._max_delay)
        self._consumer = consumer
        if self._read_unsynced and isinstance(consumer, EmbeddedConsumer):
            consumer.read_unsynced = True
        if isinstance(consumer, RebalancingConsumer):
            consumer.on_revoked = self._release
        try:
            self.ready.set()
            async with asyncio.TaskGroup() as tasks:
                committer = tasks.create_task(self._commit_loop())
                await self._fetch_loop(consumer, tasks)
                self._halting = True
                if self._workers:
                    await asyncio.wait(self._workers)
                await committer
            await self._commit_once()
        except asyncio.CancelledError:
            # Cancelled records never finished, so the watermark is still safe:
            # commit it, to spare the next run some replaying.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._commit_once(), FINAL_COMMIT_TIMEOUT)
            raise
        finally:
            await consumer.close()
        if self._fatal is not None:
            raise self._fatal

    # -- fetching and dispatch -------------------------------------------

    async def _fetch_loop(self, consumer: LogConsumer, tasks: asyncio.TaskGroup) -> None:
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                if not self._has_room.is_set():
                    room = asyncio.ensure_future(self._has_room.wait())
                    await asyncio.wait([room, stopping], return_when=asyncio.FIRST_COMPLETED)
                    room.cancel()
                    continue
                releases_before = len(self._releases)
                # Awaited directly (stop() cancels it): records reach their
                # handlers one loop turn sooner than through asyncio.wait.
                fetch = asyncio.ensure_future(
                    consumer.fetch(min(self._fetch_max_records, self._max_pending - self._pending), self._fetch_timeout)
                )
                self._fetching = fetch
                try:
                    records = await fetch
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # the runner itself is cancelled
                    # Stopping: whatever this fetch would return stays uncommitted.
                    return
                except PositionLost as lost:
                    if self._on_position_lost is None:
                        # Shut down cleanly first; run() raises it afterwards.
                        self._fatal = lost
                        self._stopping.set()
                        return
                    logger.warning("%s: %s", self.group, lost)
                    # The partition starts over where the log now begins; what was
                    # committed before may lie beyond it (a log restored from a copy).
                    self._progress.pop((lost.topic, lost.partition), None)
                    self._committed.pop((lost.topic, lost.partition), None)
                    await self._on_position_lost(lost)
                    continue
                except Exception:
                    logger.exception("%s: fetch failed; retrying", self.group)
                    await asyncio.wait([stopping], timeout=FETCH_RETRY_DELAY)
                    continue
                # Partitions released while this fetch ran are another member's now.
                released = frozenset().union(*self._releases[releases_before:])
                for record in records:
                    if (record.topic, record.partition) not in released:
                        self._dispatch(record, tasks)
        finally:
            stopping.cancel()

    def _dispatch(self, record: LogRecord, tasks: asyncio.TaskGroup) -> None:
        progress = self._progress.setdefault((record.topic, record.partition), _PartitionProgress())
        if record.offset in progress.in_flight:
            # Delivered again (a rebalance rewound the consumer) while the first copy is queued.
            return
        progress.in_flight.add(record.offset)
        heapq.heappush(progress.unfinished, record.offset)
        progress.fetched_end = max(progress.fetched_end, record.offset + 1)
        self._pending += 1
        if self._pending >= self._max_pending:
            self._has_room.clear()
        queue = self._queues.get(record.key)
        if queue is not None:
            queue.append(record)
            return
        self._queues[record.key] = deque([record])
        worker = tasks.create_task(self._work(record.key))
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    async def _work(self, key: bytes) -> None:
        queue = self._queues[key]
        try:
            while queue and not self._halting:
                async with self._slots:
                    # Taken off the queue only now, so that until it starts a
                    # record can still be withdrawn (stop, revoked partition).
                    if self._halting or not queue:
                        return
                    batch = [queue.popleft() for _ in range(min(len(queue), self._max_batch))]
                    self._handling[key] = batch
                    try:
                        await self._handle(batch)
                    finally:
                        del self._handling[key]
                        self._handled.set()
                        self._handled = asyncio.Event()
                for record in batch:
                    self._finished(record)
        finally:
            # No await between the emptiness check and this: a record for this
            # key that arrives later starts a new worker.
            if self._queues.get(key) is queue:
                del self._queues[key]

    async def _handle(self, batch: list[LogRecord]) -> None:
        if self._batch_handler is None:
            await self._handle_one(batch[0])
            return
        if len(batch) == 1:
            await self._handle_one(batch[0])
            return
        try:
            await self._batch_handler(batch)
            return
        except Exception:
            logger.warning("%s: a batch of %d records (key %r) failed; handling them one by one",
                           self.group, len(batch), batch[0].key, exc_info=True)
        for record in batch:
            await self._handle_one(record)

    async def _handle_one(self, record: LogRecord) -> None:
        try:
            if self._batch_handler is not None:
                await self._batch_handler([record])
            else:
                assert self._handler is not None
                await self._handler(record)
        except Exception as exc:
            logger.exception(
                "%s: handler failed on %s[%d]@%d (key %r); skipping it",
                self.group, record.topic, record.partition, record.offset, record.key,
            )
            if self._on_poison is not None:
                try:
                    await self._on_poison(record, exc)
                except Exception:
                    logger.exception("%s: on_poison failed for %s[%d]@%d",
                                     self.group, record.topic, record.partition, record.offset)

    def _finished(self, record: LogRecord) -> None:
        progress = self._progress.get((record.topic, record.partition))
        if progress is not None:
            progress.in_flight.discard(record.offset)
        self._pending -= 1
        if self._pending < self._max_pending:
            self._has_room.set()

    async def _release(self, partitions: frozenset[TopicPartition]) -> None:
        """The group is moving ``partitions`` to another member: withdraw their
        records that have not started, let the running ones finish, and commit,
        so the next owner starts where this one stopped and no room is ever
        handled by two members at once."""
        self._releases.append(partitions)
        withdrawn = 0
        for queue in self._queues.values():
            keep = [r for r in queue if (r.topic, r.partition) not in partitions]
            withdrawn += len(queue) - len(keep)
            if len(keep) != len(queue):
                queue.clear()
                queue.extend(keep)
        while any((r.topic, r.partition) in partitions for batch in self._handling.values() for r in batch):
            await self._handled.wait()
        await self._commit_once()
        for partition in partitions:
            self._progress.pop(partition, None)
            self._committed.pop(partition, None)
        self._pending -= withdrawn
        if self._pending < self._max_pending:
            self._has_room.set()

    # -- committing ------------------------------------------------------

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            # On the loop clock's multiples of the interval: the runners of a
            # process commit together, and their files' fsyncs share journal
            # commits instead of each taking the disk on its own.
            delay = self._commit_interval - loop.time() % self._commit_interval
            # asyncio.timeout, not wait_for, which on Python 3.11 can swallow
            # a cancellation that lands as the event is set.
            try:
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            except TimeoutError:
                if self._handling:
                    # A batch is running: its wake-ups and the reads they
                    # start go first; the commit follows its end (bounded,
                    # so a runner that is never idle still commits).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._commit_interval):
                            await self._handled.wait()
                await self._commit_once()

    async def _commit_once(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        positions = {}
        for partition, progress in self._progress.items():
            watermark = progress.watermark()
            if watermark > self._committed.get(partition, -1):
                positions[partition] = watermark
        if not positions:
            return
        try:
            await consumer.commit(positions)
        except Exception:
            logger.warning("%s: commit failed; will retry", self.group, exc_info=True)
            return
        self._committed.update(positions)


async def run_consumer(runner: KeyedConsumerRunner, ready: asyncio.Event | None = None, *,
                       stop_timeout: float = 10.0) -> None:
    """Runs ``runner`` until cancelled, setting ``ready`` once it consumes.

    On cancellation the runner is stopped cleanly (handlers in flight finish
    and their offsets are committed, for up to ``stop_timeout`` seconds)
    before the cancellation goes on to the caller.
    """
    running = asyncio.create_task(runner.run())
    waiting = asyncio.create_task(runner.ready.wait())
    try:
        await asyncio.wait([running, waiting], return_when=asyncio.FIRST_COMPLETED)
        if runner.ready.is_set() and ready is not None:
            ready.set()
        # Shielded, so a cancellation reaches the clean stop below instead
        # of tearing the runner down mid-batch.
        await asyncio.shield(running)
    except asyncio.CancelledError:
        runner.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, stop_timeout)
        raise
    finally:
        waiting.cancel()
