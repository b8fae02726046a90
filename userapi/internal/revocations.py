"""Telling the fronts' token caches which access tokens stopped working.

A front in another process (client API, sync API, media API) may remember
what ``QueryAccessToken`` answered (``userapi/grpc/token_cache.py``). The
user API names here, after committing, every change that ends or alters such
an answer (a logout, deleted devices, a password change that logs devices
out, a deactivation, a replaced or refreshed token, a renamed device, an
upgraded guest); each watcher (one gRPC stream, ``WatchTokenRevocations``)
gets the message before the revoking call answers.

The list of watchers lives in this process: the user API runs as one
instance, and a watcher whose stream breaks (this process restarting) forgets
everything it remembered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from myelin.userapi.v1 import userapi_pb2 as pb

# Revocations queued for one watcher at most; a watcher further behind is
# cut off (it then forgets everything and subscribes again).
MAX_QUEUED = 10_000


class Watcher:
    """One subscriber's queue of revocations, in the order committed."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[pb.TokenRevocation] = asyncio.Queue(MAX_QUEUED)
        # Set when the queue overflowed: the stream must end, not skip.
        self.overflowed = False

    def push(self, revocation: pb.TokenRevocation) -> None:
        try:
            self._queue.put_nowait(revocation)
        except asyncio.QueueFull:
            self.overflowed = True

    async def next(self, timeout: float) -> pb.TokenRevocation | None:
        """The next revocation, or None when none came within ``timeout``."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None


class TokenRevocations:
    """The fan-out of revocations to the watchers of this process."""

    def __init__(self) -> None:
        self._watchers: set[Watcher] = set()

    @contextmanager
    def watch(self) -> Iterator[Watcher]:
        """A watcher that gets every revocation published while it is open."""
        watcher = Watcher()
        self._watchers.add(watcher)
        try:
            yield watcher
        finally:
            self._watchers.discard(watcher)

    def publish(self, user_id: str, device_ids: Iterable[str] = ()) -> None:
        """The tokens of these devices of ``user_id`` (none named: of every
        device) were revoked or their owner's details changed. Call after the
        change is committed, before answering the request that made it."""
        if not self._watchers:
            return
        revocation = pb.TokenRevocation(user_id=user_id, device_ids=list(device_ids))
        for watcher in self._watchers:
            watcher.push(revocation)

    def publish_all(self) -> None:
        """Every answer may have changed (a change not tied to one user ID)."""
        if not self._watchers:
            return
        revocation = pb.TokenRevocation(all_users=True)
        for watcher in self._watchers:
            watcher.push(revocation)
