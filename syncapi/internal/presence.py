"""Presence writes (modules/presence.md): ``PUT /presence/{userId}/status``
and /sync's ``set_presence``.

The sync API holds presence (it serves it in /sync and on
``GET /presence/{userId}/status``), so a write is applied here at once and
also appended to ``clientapi.presence`` for the other readers of presence;
this component's own consumer then finds the record already applied (or
older than what is stored) and changes nothing.

Every write stamps ``last_active_ts`` with its time; ``last_active_ago`` is
derived from it when served. /sync marks its user online (or unavailable)
only when that changes their presence or their last write is older than
``SYNC_REFRESH_MS``, remembered per process, so a long-polling client does
not write on every request.
"""

from __future__ import annotations

import logging

from myelin.clientapi.v1 import edu_log_pb2

from common.log import Log
from common.topics import CLIENTAPI_PRESENCE
from syncapi.consumers.clientapi import ClientAPIConsumer
from syncapi.internal.typing import now_ms

logger = logging.getLogger(__name__)

PRESENCE_STATES = ("online", "unavailable", "offline")
SYNC_REFRESH_MS = 60 * 1000


class PresenceWriter:
    def __init__(self, consumer: ClientAPIConsumer, log: Log | None) -> None:
        self._consumer = consumer
        self._log = log
        # user ID -> (presence set by /sync, when written)
        self._sync_writes: dict[str, tuple[str, int]] = {}

    async def set_presence(self, user_id: str, presence: str, status_msg: str | None = None, *,
                           keep_status: bool = True) -> None:
        now = now_ms()
        update = edu_log_pb2.PresenceUpdate(user_id=user_id, presence=presence, last_active_ts_ms=now)
        if not keep_status:
            update.status_msg = status_msg or ""
        await self._consumer.on_presence(update)
        self._sync_writes.pop(user_id, None)
        if self._log is not None:
            try:
                await self._log.append(CLIENTAPI_PRESENCE.name, user_id.encode(), update.SerializeToString())
            except Exception:
                # Applied here already; other readers miss this one change.
                logger.warning("could not append the presence of %s", user_id, exc_info=True)

    async def on_sync(self, user_id: str, set_presence: str | None) -> None:
        """/sync's ``set_presence`` (omitted: online). "offline" leaves the
        presence as it is: the client is only not marked online."""
        presence = set_presence or "online"
        if presence == "offline":
            return
        now = now_ms()
        last = self._sync_writes.get(user_id)
        if last is not None and last[0] == presence and now - last[1] < SYNC_REFRESH_MS:
            return
        await self.set_presence(user_id, presence)
        self._sync_writes[user_id] = (presence, now)
