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
not write on every request. A user /sync marked online who has had no /sync
in progress for ``SYNC_ONLINE_TIMEOUT_MS`` goes offline (as Synapse does),
their last activity being the end of their last /sync. (Several sync API
instances each time out the users they saw syncing.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from myelin.clientapi.v1 import edu_log_pb2

from common.log import Log
from common.topics import CLIENTAPI_PRESENCE
from syncapi.consumers.clientapi import ClientAPIConsumer
from syncapi.internal.typing import now_ms

logger = logging.getLogger(__name__)

PRESENCE_STATES = ("online", "unavailable", "offline")
SYNC_REFRESH_MS = 60 * 1000
SYNC_ONLINE_TIMEOUT_MS = 30 * 1000
# Seconds between looks for users who stopped syncing.
IDLE_SWEEP_INTERVAL = 5.0


class PresenceWriter:
    def __init__(self, consumer: ClientAPIConsumer, log: Log | None) -> None:
        self._consumer = consumer
        self._log = log
        # user ID -> (presence set by /sync, when written)
        self._sync_writes: dict[str, tuple[str, int]] = {}
        # user ID -> /sync requests in progress; when the last one ended
        self._syncing: dict[str, int] = {}
        self._last_sync_end: dict[str, int] = {}

    async def set_presence(self, user_id: str, presence: str, status_msg: str | None = None, *,
                           keep_status: bool = True, last_active_ts: int | None = None) -> None:
        now = now_ms() if last_active_ts is None else last_active_ts
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

    @asynccontextmanager
    async def syncing(self, user_id: str) -> AsyncIterator[None]:
        """Around a /sync request: the user counts as connected meanwhile."""
        self._syncing[user_id] = self._syncing.get(user_id, 0) + 1
        try:
            yield
        finally:
            remaining = self._syncing[user_id] - 1
            if remaining:
                self._syncing[user_id] = remaining
            else:
                del self._syncing[user_id]
            self._last_sync_end[user_id] = now_ms()

    async def time_out_idle(self, now: int | None = None) -> list[str]:
        """Sets offline the users /sync marked online (or unavailable) who
        have not synced for ``SYNC_ONLINE_TIMEOUT_MS``; answers them."""
        now = now_ms() if now is None else now
        timed_out: list[str] = []
        for user_id in list(self._sync_writes):
            if user_id in self._syncing:
                continue
            ended = self._last_sync_end.get(user_id)
            if ended is None or now - ended < SYNC_ONLINE_TIMEOUT_MS:
                continue
            try:
                await self.set_presence(user_id, "offline", last_active_ts=ended)
            except Exception:
                logger.warning("could not time out the presence of %s", user_id, exc_info=True)
                continue
            self._last_sync_end.pop(user_id, None)
            timed_out.append(user_id)
        return timed_out

    async def expire_idle(self) -> None:
        """Runs ``time_out_idle`` periodically until cancelled."""
        while True:
            await asyncio.sleep(IDLE_SWEEP_INTERVAL)
            await self.time_out_idle()
