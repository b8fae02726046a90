"""The Kafka backend of the log (aiokafka), for components in separate processes.

Production runs Apache Kafka or Redpanda; the tests run Tansu. Producers
write with ``acks=all``, idempotently when the broker can hand out producer
IDs (Tansu 0.6 cannot: ``start`` asks the broker once and falls back).
Records are partitioned by key with the Java client's murmur2 partitioner,
so producers in other languages agree on where a room's records go.

Consumers join their group with ``enable_auto_commit=False`` and commit what
``KeyedConsumerRunner`` says is handled. A group that never committed starts
at the earliest record; a committed position that the broker no longer
holds raises ``PositionLost`` (the consumer runs with
``auto_offset_reset="none"`` and seeks to the beginning itself, so the two
cases stay apart, as the embedded log keeps them apart).

Tansu answers a fetch only when its wait has passed, so consumers poll: with
a short wait while records flow, a long one when quiet, a longer one for a
member given a ``max_delay`` (``set_max_delay``, see
``common.log.PollingConsumer``). A record appended through a ``KafkaLog``
reaches that log's own members without a fetch (see ``KafkaConsumer``): a
process that reads its own topic (the room server's input) neither waits
for nor polls the broker for it. Records another process appended come the
same way when it relays them (``common/logs/relay.py``; ``offer``). A
partition whose records all come that way is not fetched at all while they
do (``COVERED_CHECK_S``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError
from aiokafka.protocol.group import LeaveGroupRequest
from aiokafka.protocol.transaction import InitProducerIdRequest
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from common.log import LogRecord, PositionLost, RecordTooLarge
from common.topics import ALL_TOPICS

logger = logging.getLogger(__name__)

Batches = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]

TOPIC_ALREADY_EXISTS = 36
# A room join can carry the room's whole state: Kafka's 1 MB default is too small.
DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024
RECORD_BATCH_OVERHEAD = 64 * 1024

# How long the broker may hold a fetch that finds no records. Tansu answers a
# fetch only once this has passed, never early when records arrive (measured
# with aiokafka: a record's delivery p50 115 ms at aiokafka's default of
# 500 ms, 4 ms at 20 ms), so every log hop of a request (client API -> room
# server -> sync API) waited out the wait: ~250 ms a message in the split
# deployment. A short wait costs the consumer and the broker CPU while nothing
# flows (10 ms: ~3% and ~4% of a core per idle consumer), so a consumer
# fetches with the short wait while records flow and goes back to the long
# one after a quiet spell. On Kafka proper, which answers early, both are
# only upper bounds.
ACTIVE_FETCH_WAIT_MS = 5
IDLE_FETCH_WAIT_MS = 200
QUIET_BEFORE_IDLE_S = 2.0
# A fetch is one request whatever it asks for, but Tansu's cost grows with
# the topics in it (measured: ~0.2 ms of broker CPU per topic per fetch; 4
# topics at a 5 ms wait ~11% of a core, 1 topic 3.4%), so a consumer whose
# records may wait (``max_delay``) fetches with a longer wait.
MAX_FETCH_WAIT_MS = 1000
# Records this process appended, held for its own consumers until they
# reach them; past this many per partition, the rest come by fetch.
MAX_LOCAL_RECORDS = 10_000
MAX_LOCAL_BYTES = 64 * 1024 * 1024  # per member
# A member reading several topics fetches them all in one request, at the
# short wait as soon as any of them has records; so while some of its topics
# flow, the ones quiet for QUIET_BEFORE_IDLE_S are paused (left out of the
# requests) except for a sweep of SWEEP_S every idle wait: a record there
# waits about as long as on a member that is idle.
SWEEP_S = 0.05
# A partition whose records lately all reached a member from memory (its own
# log's appends, or relayed by the process that appended them) is covered:
# a fetch of it brings only copies to drop, and each costs the broker and the
# member CPU for every record (on Tansu about a tenth of a split deployment's
# CPU per sent message). Covered partitions are left out of fetches. Every
# COVERED_CHECK_S the member asks the broker where they end (ListOffsets; its
# answer may wait behind a fetch the member has open) and fetches again one
# that ends past its position, so a record memory did not bring (another
# process's append, a relayed record lost) waits that long and a fetch wait
# or two at most; a relay stream that ends uncovers its partitions at once
# (``KafkaLog.relay_stopped``).
COVERED_CHECK_S = 0.1


class KafkaLog:
    """A connection to a Kafka cluster.

    ``partitions`` and ``replication_factor`` apply to the topics this log
    creates: ``topics`` on ``start`` (all registered topics by default) and any
    other topic on first use. ``session_timeout_ms`` and
    ``heartbeat_interval_ms`` go to every consumer (Tansu holds a join open for
    half the session timeout, so tests pass small values). ``idempotence``
    None asks the broker whether it supports idempotent producers.
    ``retention_bytes`` becomes the ``retention.bytes`` of created topics
    (None: the broker's default) and ``max_record_bytes`` their
    ``max.message.bytes``; topics that exist keep their settings. A broker
    whose ``message.max.bytes`` is smaller still refuses bigger records."""

    def __init__(
        self,
        bootstrap_servers: str,
        client_id: str,
        *,
        partitions: int = 8,
        replication_factor: int = 1,
        topics: Sequence[str] | None = None,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        join_timeout: float = 60.0,
        idempotence: bool | None = None,
        retention_bytes: int | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.partitions = partitions
        self.replication_factor = replication_factor
        self._initial_topics = [t.name for t in ALL_TOPICS] if topics is None else list(topics)
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.join_timeout = join_timeout
        self.idempotence = idempotence
        self.retention_bytes = retention_bytes
        self.max_record_bytes = max_record_bytes
        self._client: AIOKafkaClient | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._producer: AIOKafkaProducer | None = None
        self._known_topics: set[str] = set()
        self._topic_lock = asyncio.Lock()
        self._consumers: set[KafkaConsumer] = set()
        # Called with each record this log appended, once the broker
        # acknowledged it (the log relay: common/logs/relay.py).
        self._append_listeners: set[Callable[[LogRecord], None]] = set()

    async def start(self) -> None:
        if self._producer is not None:
            return
        self._client = AIOKafkaClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id)
        await self._client.bootstrap()
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id)
        await self._admin.start()
        await self._ensure_topics(self._initial_topics)
        if self.idempotence is None:
            self.idempotence = await self._broker_supports_idempotence()
            if not self.idempotence:
                logger.warning("Kafka broker gives no producer IDs: producing without idempotence")
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=self.idempotence,
            max_request_size=self.max_record_bytes + RECORD_BATCH_OVERHEAD,
        )
        await self._producer.start()

    async def _broker_supports_idempotence(self) -> bool:
        assert self._client is not None
        request = InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000)  # type: ignore[arg-type]
        try:
            response = await self._client.send(self._client.get_random_node(), request)
        except Exception:
            logger.debug("InitProducerId probe failed", exc_info=True)
            return False
        return bool(response.error_code == 0)

    async def _ensure_topics(self, names: Sequence[str]) -> None:
        missing = [name for name in names if name not in self._known_topics]
        if not missing:
            return
        assert self._admin is not None, "KafkaLog.start() was not called"
        async with self._topic_lock:
            missing = [name for name in missing if name not in self._known_topics]
            if not missing:
                return
            configs = {"max.message.bytes": str(self.max_record_bytes + RECORD_BATCH_OVERHEAD)}
            if self.retention_bytes is not None:
                configs["retention.bytes"] = str(self.retention_bytes)
            response = await self._admin.create_topics(
                [NewTopic(name, self.partitions, self.replication_factor, topic_configs=configs) for name in missing]
            )
            for topic_error in response.topic_errors:
                name, code = topic_error[0], topic_error[1]
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"could not create Kafka topic {name!r}: error {code} {topic_error[2]}")
            self._known_topics.update(missing)

    async def append(self, topic: str, key: bytes, value: bytes) -> LogRecord:
        if self._producer is None:
            raise RuntimeError("KafkaLog.start() was not called")
        if len(key) + len(value) > self.max_record_bytes:
            raise RecordTooLarge(f"a record of {len(key) + len(value)} bytes for {topic}")
        await self._ensure_topics([topic])
        metadata = await self._producer.send_and_wait(topic, value, key=key)
        record = LogRecord(topic, metadata.partition, metadata.offset, key, value)
        self.offer(record)
        for listener in list(self._append_listeners):
            listener(record)
        return record

    def offer(self, record: LogRecord) -> None:
        """Hands a record the log holds (appended here, or relayed from the
        process that appended it) to this log's members that read its topic;
        each takes it when its position reaches it (see ``KafkaConsumer``)."""
        for member in self._consumers:
            member._offer_local(record)

    def relay_stopped(self) -> None:
        """Says that records another process relayed (``offer``) may stop
        coming: this log's members fetch every partition again until memory
        covers it anew."""
        for member in self._consumers:
            member._uncover(member._covered)

    def listen_appends(self, listener: Callable[[LogRecord], None]) -> Callable[[], None]:
        """Calls ``listener`` with every record appended through this log
        from now on, once acknowledged; answers the function that stops it."""
        self._append_listeners.add(listener)
        return lambda: self._append_listeners.discard(listener)

    async def consumer(self, group: str, topics: Sequence[str]) -> KafkaConsumer:
        """A member of ``group``; records appended through this log reach
        its own members at once (see ``KafkaConsumer``)."""
        if self._producer is None:
            raise RuntimeError("KafkaLog.start() was not called")
        await self._ensure_topics(topics)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="none",
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            fetch_max_wait_ms=IDLE_FETCH_WAIT_MS,
        )
        member = KafkaConsumer(self, consumer, group, topics)
        consumer.subscribe(list(topics), listener=_Listener(member))
        await consumer.start()
        try:
            await asyncio.wait_for(member.joined.wait(), self.join_timeout)
        except BaseException:
            await member.close()
            raise
        self._consumers.add(member)
        return member

    async def _leave_group(self, coordinator_id: int, group: str, member_id: str) -> None:
        assert self._client is not None
        await self._client.send(coordinator_id, LeaveGroupRequest(group, member_id))

    async def close(self) -> None:
        for member in list(self._consumers):
            await member.close()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
        if self._client is not None:
            await self._client.close()
            self._client = None


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, member: KafkaConsumer) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._member._forget_local(revoked)
        partitions = frozenset((tp.topic, tp.partition) for tp in revoked)
        if partitions and self._member.on_revoked is not None:
            await self._member.on_revoked(partitions)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._member._forget_local(assigned)
        self._member._unchecked.update(assigned)
        self._member.joined.set()


class KafkaConsumer:
    """A member of a Kafka consumer group.

    Records that the same ``KafkaLog`` appended to a partition this member
    holds are handed over from memory (``_offer_local``) instead of waiting
    for a fetch: Tansu answers a fetch only when its wait has passed, so a
    process's hop to itself (the room server's input) would cost a fetch
    wait and a short-wait poll. They are handed over in offset order from
    the member's position only, after their append was acknowledged (so the
    same as a fetch would return), and the member's position then moves past
    them, as a fetch would; the fetcher's copies are dropped."""

    def __init__(self, log: KafkaLog, consumer: AIOKafkaConsumer, group: str, topics: Sequence[str] = ()) -> None:
        self._log = log
        self._consumer = consumer
        self.group = group
        self.topics = frozenset(topics)
        self._closed = False
        self.joined = asyncio.Event()
        # See common.log.RebalancingConsumer.
        self.on_revoked: Callable[[frozenset[tuple[str, int]]], Awaitable[None]] | None = None
        # Newly assigned partitions whose committed position is not yet checked.
        self._unchecked: set[TopicPartition] = set()
        # Until when (loop time) fetches wait active_wait_ms: records came lately.
        self._active_until = 0.0
        self.active_wait_ms = ACTIVE_FETCH_WAIT_MS
        self.idle_wait_ms = IDLE_FETCH_WAIT_MS
        self.fetch_wait_ms = IDLE_FETCH_WAIT_MS
        # Per topic, when records of it last came by fetch; when the last sweep of quiet topics began.
        self._topic_records_at: dict[str, float] = {}
        self._sweep_started = float("-inf")
        # Records appended by this process, by partition and offset, not yet handed over.
        self._local: dict[TopicPartition, dict[int, LogRecord]] = {}
        self._local_bytes = 0
        self._local_arrived = asyncio.Event()
        # Per partition: the end of what was handed over from memory; the
        # fetcher's copies below it are dropped.
        self._local_end: dict[TopicPartition, int] = {}
        self.local_records = 0  # handed over from memory (for tests and measurements)
        # Partitions left out of fetches: memory brings their records (see
        # COVERED_CHECK_S); when the broker is next asked where they end.
        self._covered: set[TopicPartition] = set()
        self._next_covered_check = 0.0
        self._covered_check: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._covered_check.set_result(None)
        self.covered_checks = 0  # ListOffsets asked (for tests)

    def _set_fetch_wait(self, wait_ms: int) -> None:
        """The fetch wait of the consumer's next fetch requests. aiokafka
        takes it only as a setting of the consumer, so it is set on its
        fetcher (aiokafka is pinned; tests/logs checks the attribute)."""
        if wait_ms != self.fetch_wait_ms:
            fetcher = getattr(self._consumer, "_fetcher", None)
            if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms"):
                fetcher._fetch_max_wait_ms = wait_ms
                self.fetch_wait_ms = wait_ms

    def set_max_delay(self, seconds: float) -> None:
        """See ``common.log.PollingConsumer``: the fetch wait while records
        flow (bounded by ``MAX_FETCH_WAIT_MS``), and at least that when quiet."""
        self.active_wait_ms = min(MAX_FETCH_WAIT_MS, max(ACTIVE_FETCH_WAIT_MS, round(seconds * 1000)))
        self.idle_wait_ms = max(IDLE_FETCH_WAIT_MS, self.active_wait_ms)
        now = asyncio.get_running_loop().time()
        self._set_fetch_wait(self.active_wait_ms if now < self._active_until else self.idle_wait_ms)

    def _offer_local(self, record: LogRecord) -> None:
        if self._closed or record.topic not in self.topics:
            return
        partition = TopicPartition(record.topic, record.partition)
        if partition not in self._consumer.assignment():
            return  # another member's (or not assigned yet): it comes by fetch
        size = len(record.key) + len(record.value)
        held = self._local.setdefault(partition, {})
        if len(held) < MAX_LOCAL_RECORDS and self._local_bytes + size <= MAX_LOCAL_BYTES:
            held[record.offset] = record
            self._local_bytes += size
            self._local_arrived.set()
        else:
            self._uncover([partition])  # this one comes by fetch

    def _update_paused(self, now: float) -> float:
        """Pauses the covered partitions, and the quiet topics of an active
        member, or resumes them (a sweep, or the member is idle: one long
        wait covers every topic). Answers how long (seconds) until that
        should be looked at again. aiokafka drops what it fetched for a
        partition it pauses; the position stays, so a later fetch brings it
        again."""
        quiet: set[str] = set()
        recheck = self.idle_wait_ms / 1000
        if len(self.topics) > 1 and now < self._active_until:
            quiet = {topic for topic in self.topics
                     if now - self._topic_records_at.get(topic, float("-inf")) >= QUIET_BEFORE_IDLE_S}
            if quiet == self.topics:
                quiet = set()
            if quiet:
                if now - self._sweep_started >= self.idle_wait_ms / 1000:
                    self._sweep_started = now
                sweep_ends = self._sweep_started + SWEEP_S
                if now < sweep_ends:
                    quiet = set()
                    recheck = sweep_ends - now
                else:
                    recheck = self._sweep_started + self.idle_wait_ms / 1000 - now
        paused = self._consumer.paused()
        assigned = self._consumer.assignment()
        self._covered &= assigned
        if self._covered and self._covered_check.done():
            recheck = min(recheck, self._next_covered_check - now)
        wanted = {tp for tp in assigned if tp.topic in quiet} | self._covered
        to_pause = [tp for tp in wanted if tp not in paused]
        to_resume = [tp for tp in paused if tp not in wanted]
        if to_pause:
            self._consumer.pause(*to_pause)
        if to_resume:
            self._consumer.resume(*to_resume)
        return max(0.001, recheck)

    def _cover(self, partition: TopicPartition, now: float) -> None:
        if not self._covered:
            self._next_covered_check = now + COVERED_CHECK_S
        self._covered.add(partition)

    def _uncover(self, partitions: Iterable[TopicPartition]) -> None:
        """Fetches ``partitions`` again, at once and with the short wait:
        a record there may be waiting."""
        uncovered = self._covered & set(partitions)
        if uncovered:
            self._covered -= uncovered
            self._active_until = asyncio.get_running_loop().time() + QUIET_BEFORE_IDLE_S
            self._set_fetch_wait(self.active_wait_ms)
            self._local_arrived.set()  # a waiting fetch looks again

    async def _check_covered(self, now: float) -> None:
        """Fetches again the covered partitions that end past the member's
        position (see COVERED_CHECK_S). The ends are those of when the broker
        was asked, and the position only moves on, so a partition found
        behind is behind."""
        self._next_covered_check = now + COVERED_CHECK_S
        partitions = sorted(self._covered & self._consumer.assignment())
        if not partitions:
            return
        self.covered_checks += 1
        try:
            ends = await self._consumer.end_offsets(partitions)
        except Exception:
            logger.debug("ListOffsets failed: fetching every partition", exc_info=True)
            self._uncover(partitions)
            return
        behind = []
        for partition in partitions:
            position = self._position(partition)
            if position is None:
                behind.append(partition)
                continue
            held = self._local.get(partition, {})
            while position in held:  # here already, not yet taken
                position += 1
            if ends.get(partition, 0) > position:
                behind.append(partition)
        self._uncover(behind)

    def _forget_local(self, partitions: Iterable[TopicPartition]) -> None:
        """Drops what this member holds or handed over from memory for
        ``partitions``: their position moves elsewhere (a rebalance, a seek
        to the beginning), and what comes by fetch from there is new."""
        for partition in partitions:
            held = self._local.pop(partition, None)
            if held:
                self._local_bytes -= sum(len(r.key) + len(r.value) for r in held.values())
            self._local_end.pop(partition, None)
            self._covered.discard(partition)

    def _position(self, partition: TopicPartition) -> int | None:
        """The member's position in ``partition`` (the next offset it
        returns), when aiokafka knows it; None otherwise."""
        try:
            state = self._consumer._subscription.subscription.assignment.state_value(partition)
        except Exception:
            return None
        if state is None or not state.has_valid_position:
            return None
        position: int = state.position
        return position

    def _take_local(self, max_records: int) -> list[LogRecord]:
        """The held records that follow on from the member's position, in
        offset order; the position moves past them."""
        taken: list[LogRecord] = []
        now = asyncio.get_running_loop().time()
        for partition in list(self._local):
            held = self._local[partition]
            position = self._position(partition)
            if position is None:
                continue
            start = position
            while position in held and len(taken) < max_records:
                record = held.pop(position)
                self._local_bytes -= len(record.key) + len(record.value)
                taken.append(record)
                position += 1
            for offset in [o for o in held if o < position]:
                record = held.pop(offset)  # came by fetch already
                self._local_bytes -= len(record.key) + len(record.value)
            if not held:
                del self._local[partition]
            if position > start:
                self._consumer.seek(partition, position)
                self._local_end[partition] = position
                self._cover(partition, now)
        self.local_records += len(taken)
        return taken

    async def _getmany(self, timeout_ms: int, max_records: int) -> Batches:
        """aiokafka's getmany, cut short when a record of this process's own arrives."""
        if timeout_ms <= 0:
            batches: Batches = await self._consumer.getmany(timeout_ms=0, max_records=max_records)
            return batches
        self._local_arrived.clear()
        fetching = asyncio.ensure_future(self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records))
        # Its exception is raised below when it is the answer; when it is not
        # (given up, or this call cancelled), it matters to no one.
        fetching.add_done_callback(_retrieve_outcome)
        local = asyncio.ensure_future(self._local_arrived.wait())
        try:
            await asyncio.wait([fetching, local], return_when=asyncio.FIRST_COMPLETED)
        finally:
            local.cancel()
            if not fetching.done():
                # Cancelled while it waits (it drains aiokafka's buffer only
                # on its way out): the records stay buffered for the next call.
                fetching.cancel()
        if not fetching.done():
            return {}
        batches = fetching.result()
        return batches

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> Sequence[LogRecord]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._unchecked:
            await self._check_positions()
        while True:
            if self._covered and loop.time() >= self._next_covered_check and self._covered_check.done():
                # Not awaited: aiokafka answers requests to a broker in order, so
                # the answer may wait behind a fetch of other partitions.
                self._covered_check = asyncio.ensure_future(self._check_covered(loop.time()))
            if self._local:
                taken = self._take_local(max_records)
                if taken:
                    return taken
            now = loop.time()
            remaining = min(max(0.0, deadline - now), self._update_paused(now))
            try:
                batches = await self._getmany(int(remaining * 1000), max_records)
            except NoOffsetForPartitionError as exc:
                # The group never committed here: start at the earliest record.
                partitions = _partitions_of(exc)
                if not partitions:
                    raise
                self._forget_local(partitions)
                await self._consumer.seek_to_beginning(*partitions)
                if loop.time() >= deadline:
                    return []
                continue
            except OffsetOutOfRangeError as exc:
                lost: dict[TopicPartition, int] = exc.args[0] if exc.args else {}
                if lost:
                    self._forget_local(lost)
                    await self._consumer.seek_to_beginning(*lost)
                for partition, position in lost.items():
                    raise PositionLost(partition.topic, partition.partition, position) from exc
                raise
            now = loop.time()
            if batches:
                for partition in batches:
                    self._topic_records_at[partition.topic] = now
                self._active_until = now + QUIET_BEFORE_IDLE_S
                self._set_fetch_wait(self.active_wait_ms)
            elif now >= self._active_until:
                self._set_fetch_wait(self.idle_wait_ms)
            records = [
                LogRecord(record.topic, record.partition, record.offset, record.key or b"", record.value or b"")
                for partition, fetched in batches.items()
                for record in fetched
                if record.offset >= self._local_end.get(partition, -1)
            ]
            if self._local and len(records) < max_records:
                records += self._take_local(max_records - len(records))
            if records or loop.time() >= deadline:
                return records

    async def _check_positions(self) -> None:
        """Raises PositionLost for a newly assigned partition whose committed
        position lies outside what the broker holds. Kafka itself answers a
        fetch there with OFFSET_OUT_OF_RANGE, but not every compatible broker
        does (Tansu returns nothing), so look before fetching."""
        partitions = sorted(self._unchecked & self._consumer.assignment())
        self._unchecked.clear()
        if not partitions:
            return
        starts = await self._consumer.beginning_offsets(partitions)
        ends = await self._consumer.end_offsets(partitions)
        for i, partition in enumerate(partitions):
            position = await self._consumer.committed(partition)
            if position is not None and not starts[partition] <= position <= ends[partition]:
                # Check the rest on the next fetch.
                self._unchecked.update(partitions[i + 1 :])
                self._forget_local([partition])
                await self._consumer.seek_to_beginning(partition)
                raise PositionLost(partition.topic, partition.partition, position, starts[partition])

    async def commit(self, positions: dict[tuple[str, int], int]) -> None:
        # A partition a rebalance gave to another member is that member's to commit now.
        assigned = self._consumer.assignment()
        offsets = {
            TopicPartition(topic, partition): OffsetAndMetadata(offset, "")
            for (topic, partition), offset in positions.items()
            if TopicPartition(topic, partition) in assigned
        }
        if offsets:
            await self._consumer.commit(offsets)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._log._consumers.discard(self)
        self._covered_check.cancel()
        coordinator = getattr(self._consumer, "_coordinator", None)
        generation = getattr(coordinator, "generation", None)
        member_id = getattr(coordinator, "member_id", None)
        coordinator_id = getattr(coordinator, "coordinator_id", None)
        await self._consumer.stop()
        # aiokafka leaves the group only when the generation is above 0, and
        # Tansu numbers the first generation 0: without this the next member
        # waits for the old one's session to time out.
        if generation == 0 and member_id and coordinator_id is not None:
            try:
                await self._log._leave_group(coordinator_id, self.group, member_id)
            except Exception:
                logger.debug("LeaveGroup for %s failed", self.group, exc_info=True)


def _retrieve_outcome(task: asyncio.Future[Batches]) -> None:
    if not task.cancelled():
        task.exception()


def _partitions_of(exc: NoOffsetForPartitionError) -> list[TopicPartition]:
    return [arg for arg in exc.args if isinstance(arg, TopicPartition)]
