"""The event-log interface every component writes to and reads from.

Two backends implement it with the same semantics (``common/logs/``): Kafka
through aiokafka, for separate processes, and an embedded on-disk log for the
single process. A topic has partitions; a record's key picks its partition
(so one room's records stay in order); offsets grow by one per record within
a partition; a consumer group's committed positions survive a restart, and
a consumer resumes after the last committed offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LogRecord:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


class LogConsumer(Protocol):
    """One member of a consumer group, reading some topics."""

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> Sequence[LogRecord]:
        """Records after the consumer's position, waiting up to ``timeout``
        seconds for the first one; an empty sequence when none came."""
        ...

    async def commit(self, positions: dict[tuple[str, int], int]) -> None:
        """Records that every offset below ``positions[(topic, partition)]``
        is processed: after a restart the group resumes at that offset."""
        ...

    async def close(self) -> None: ...


class Log(Protocol):
    """A connection to a log backend."""

    async def start(self) -> None: ...

    async def append(self, topic: str, key: bytes, value: bytes) -> LogRecord:
        """Appends durably (the record survives a crash once this returns)
        and answers with the record's partition and offset."""
        ...

    async def consumer(self, group: str, topics: Sequence[str]) -> LogConsumer: ...

    async def close(self) -> None: ...
