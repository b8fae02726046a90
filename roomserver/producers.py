"""What the room server writes to ``roomserver.output`` (key: the room ID):
serialised ``OutputEvent``s (protos/myelin/roomserver/v1/output_log.proto)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from common.log import Log, LogRecord
from common.topics import ROOMSERVER_OUTPUT


@runtime_checkable
class BatchAppender(Protocol):
    """A log that appends several records with one durable write (the
    embedded log)."""

    async def append_batch(self, topic: str, items: Sequence[tuple[bytes, bytes]]) -> list[LogRecord]: ...


class OutputProducer:
    def __init__(self, log: Log) -> None:
        self._log = log

    async def send(self, room_id: str, payload: bytes) -> None:
        """Appends one serialised ``OutputEvent``; durable once this returns."""
        await self._log.append(ROOMSERVER_OUTPUT.name, room_id.encode(), payload)

    async def send_many(self, room_id: str, payloads: Sequence[bytes]) -> None:
        """Appends several, in order; durable once this returns."""
        key = room_id.encode()
        if isinstance(self._log, BatchAppender):
            await self._log.append_batch(ROOMSERVER_OUTPUT.name, [(key, p) for p in payloads])
            return
        for payload in payloads:
            await self._log.append(ROOMSERVER_OUTPUT.name, key, payload)
