"""What the room server writes to ``roomserver.output`` (key: the room ID):
serialised ``OutputEvent``s (protos/myelin/roomserver/v1/output_log.proto)."""

from __future__ import annotations

from common.log import Log
from common.topics import ROOMSERVER_OUTPUT


class OutputProducer:
    def __init__(self, log: Log) -> None:
        self._log = log

    async def send(self, room_id: str, payload: bytes) -> None:
        """Appends one serialised ``OutputEvent``; durable once this returns."""
        await self._log.append(ROOMSERVER_OUTPUT.name, room_id.encode(), payload)
