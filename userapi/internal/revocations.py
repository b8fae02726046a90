"""Telling the fronts' token caches which access tokens stopped working.

A front in another process (client API, sync API, media API) may remember
what ``QueryAccessToken`` answered (``userapi/grpc/token_cache.py``). The
user API names here, after committing, every change that ends or alters such
an answer (a logout, deleted devices, a password change that logs devices
out, a deactivation, a replaced or refreshed token, a renamed device, an
upgraded guest). Each watcher (one gRPC stream, ``WatchTokenRevocations``)
gets the message and acknowledges it once applied; ``publish`` returns when
every watcher has, so when the revoking request is answered no front honours
the token any more. A watcher that does not acknowledge within
``ACK_TIMEOUT_SECONDS`` (or falls ``MAX_QUEUED`` behind) is cut off: its
stream ends, and a front whose stream ends forgets everything.

The list of watchers lives in this process: the user API runs as one
instance, and a watcher whose stream breaks (this process restarting) forgets
everything it remembered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from myelin.userapi.v1 import userapi_pb2 as pb

logger = logging.getLogger(__name__)

# Revocations queued for one watcher at most; a watcher further behind is
# cut off (it then forgets everything and subscribes again).
MAX_QUEUED = 10_000
# How long a revoking call waits for a watcher's acknowledgement before
# cutting it off.
ACK_TIMEOUT_SECONDS = 2.0


class Watcher:
    """One subscriber: its queue of revocations, in the order committed, and
    how far it has acknowledged."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[pb.TokenRevocation] = asyncio.Queue(MAX_QUEUED)
        self._sent = 0
        self._acked = 0
        self._progress = asyncio.Event()
        # Set when the watcher must be cut off (its stream ended, not skipped).
        self.cut_off = asyncio.Event()

    def push(self, user_id: str, device_ids: list[str], all_users: bool) -> int:
        """Queues a revocation; answers its sequence number."""
        self._sent += 1
        try:
            self._queue.put_nowait(pb.TokenRevocation(user_id=user_id, device_ids=device_ids,
                                                      all_users=all_users, sequence=self._sent))
        except asyncio.QueueFull:
            self.cut_off.set()
        return self._sent

    def acknowledge(self, sequence: int) -> None:
        if sequence > self._acked:
            self._acked = sequence
            self._progress.set()

    async def wait_acknowledged(self, sequence: int, timeout: float) -> None:
        """Returns once ``sequence`` is acknowledged or the watcher is cut
        off (cutting it off after ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._acked < sequence and not self.cut_off.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.warning("a token revocation watcher did not acknowledge in %.1f s: cut off", timeout)
                self.cut_off.set()
                return
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                pass

    async def next(self, timeout: float) -> pb.TokenRevocation | None:
        """The next revocation; None when none came within ``timeout`` or
        the watcher was cut off meanwhile."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        getter = asyncio.ensure_future(self._queue.get())
        stopper = asyncio.ensure_future(self.cut_off.wait())
        try:
            done, _ = await asyncio.wait({getter, stopper}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            # A cancelled get leaves its item in the queue.
            for waiting in (getter, stopper):
                if not waiting.done():
                    waiting.cancel()
        return getter.result() if getter in done else None


class TokenRevocations:
    """The fan-out of revocations to the watchers of this process."""

    def __init__(self, *, ack_timeout: float = ACK_TIMEOUT_SECONDS) -> None:
        self._watchers: set[Watcher] = set()
        self._ack_timeout = ack_timeout

    @contextmanager
    def watch(self) -> Iterator[Watcher]:
        """A watcher that gets every revocation published while it is open."""
        watcher = Watcher()
        self._watchers.add(watcher)
        try:
            yield watcher
        finally:
            self._watchers.discard(watcher)
            # Nobody waits for a watcher that is gone.
            watcher.cut_off.set()

    async def publish(self, user_id: str, device_ids: Iterable[str] = ()) -> None:
        """The tokens of these devices of ``user_id`` (none named: of every
        device) were revoked or their owner's details changed. Call after the
        change is committed, before answering the request that made it:
        returns once every watcher applied it (or was cut off)."""
        await self._publish(user_id, list(device_ids), False)

    async def publish_all(self) -> None:
        """Every answer may have changed (a change not tied to one user ID)."""
        await self._publish("", [], True)

    async def _publish(self, user_id: str, device_ids: list[str], all_users: bool) -> None:
        if not self._watchers:
            return
        waits = [watcher.wait_acknowledged(watcher.push(user_id, device_ids, all_users), self._ack_timeout)
                 for watcher in list(self._watchers)]
        await asyncio.gather(*waits)
