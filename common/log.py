"""The event-log interface every component writes to and reads from.

Two backends implement it with the same semantics (``common/logs/``): Kafka
through aiokafka, for separate processes, and an embedded on-disk log for the
single process. A topic has partitions; a record's key picks its partition
(so one room's records stay in order); offsets grow by one per record within
a partition; a consumer group's committed positions survive a restart, and
a consumer resumes after the last committed offset. A group that never
committed starts at the earliest record the log still holds.

Topics are created on first use (``append`` or ``consumer``). Logs keep a
bounded amount of data; a consumer whose committed position is no longer in
the log gets ``PositionLost`` from ``fetch`` (see there).

Most components do not call ``fetch``/``commit`` themselves: they hand a
handler to ``common.consumer.KeyedConsumerRunner``, which runs one room at a
time in order and commits only what was fully handled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class LogRecord:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


class PositionLost(Exception):
    """A consumer's position in a partition is not in the log any more.

    Retention deleted the records the group had not read yet, or the group's
    committed position is beyond the end of the partition (the log was
    restored from an older copy than the group's positions). Raised once by
    ``LogConsumer.fetch``; the consumer has then moved to the earliest record
    the partition still holds, so the caller rebuilds what it derived from the
    missing records (e.g. from the room server's queries) and fetches on.
    """

    def __init__(self, topic: str, partition: int, position: int, log_start: int | None = None) -> None:
        where = f"{topic}[{partition}] at offset {position}"
        if log_start is not None:
            where += f" (the log now starts at {log_start})"
        super().__init__(f"consumer position lost: {where}")
        self.topic = topic
        self.partition = partition
        self.position = position
        self.log_start = log_start


class RecordTooLarge(ValueError):
    """``Log.append`` refused a record above the backend's size limit (16 MiB
    of key and value by default, on both backends)."""


class LogConsumer(Protocol):
    """One member of a consumer group, reading some topics."""

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> Sequence[LogRecord]:
        """Records after the consumer's position, waiting up to ``timeout``
        seconds for the first one; an empty sequence when none came.

        Within a partition records come in offset order, and the position
        moves past what is returned (whether or not it is committed). Raises
        ``PositionLost`` when the position is gone from the log."""
        ...

    async def commit(self, positions: dict[tuple[str, int], int]) -> None:
        """Records that every offset below ``positions[(topic, partition)]``
        is processed: after a restart the group resumes at that offset.
        Durable once it returns."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class RebalancingConsumer(Protocol):
    """A ``LogConsumer`` whose group can move partitions to another member
    (Kafka; the embedded log has one member per group). Before partitions
    leave, it awaits ``on_revoked`` with them, as ``(topic, partition)``
    pairs: ``KeyedConsumerRunner`` uses it to finish and commit what it holds
    of them, so that no room is handled by two members at once."""

    on_revoked: Callable[[frozenset[tuple[str, int]]], Awaitable[None]] | None


@runtime_checkable
class PollingConsumer(Protocol):
    """A ``LogConsumer`` that polls its broker for records (Kafka; the
    embedded log wakes its readers on append). ``set_max_delay(seconds)``
    says how long a record may wait before this member sees it, for readers
    nobody waits on (the federation sender): it then polls less often.
    Without it, as soon as the backend can."""

    def set_max_delay(self, seconds: float) -> None: ...


class Log(Protocol):
    """A connection to a log backend."""

    async def start(self) -> None: ...

    async def append(self, topic: str, key: bytes, value: bytes) -> LogRecord:
        """Appends durably (the record survives a crash once this returns)
        and answers with the record's partition and offset. Records with the
        same key go to the same partition, in the order they were appended."""
        ...

    async def consumer(self, group: str, topics: Sequence[str]) -> LogConsumer:
        """A member of ``group`` reading ``topics``, returned once it has
        joined the group (its partitions are assigned)."""
        ...

    async def close(self) -> None: ...
