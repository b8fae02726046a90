"""What a front in another process remembers of ``QueryAccessToken``.

Every request a client makes names its access token, and in the split
deployment resolving it is a gRPC round trip to the user API (and a
PostgreSQL read there). ``TokenCache`` keeps the answers the user API marks
``cacheable`` (tokens without an expiry), and only while this process follows
the user API's revocation stream (``WatchTokenRevocations``, fed by
``userapi/internal/revocations.py``):

- nothing is answered from memory until the stream has said ``subscribed``:
  every revocation committed after that point reaches this process;
- a revocation drops the user's (or the devices') answers, and bumps
  ``generation``: a lookup that was in flight when it came (and may have read
  the token before it was deleted) is not stored (``begin``/``put``);
- the user API answers a revoking call only once every watcher has
  acknowledged the revocation as applied (or was cut off, which ends its
  stream), so no front honours the token after the revoking request is
  answered; the process that made the call also drops the answers itself
  when it returns (``revoke``);
- the stream breaking, or going silent past its heartbeats, forgets
  everything, and nothing is remembered until it is back;
- an answer is kept ``MAX_AGE_SECONDS`` at most, so ``last_seen_ts`` keeps
  moving and a change published nowhere cannot last.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from myelin.userapi.v1 import userapi_pb2 as pb

MAX_ENTRIES = 50_000
MAX_AGE_SECONDS = 60.0


@dataclass(slots=True)
class _Entry:
    device: pb.Device
    stored_at: float


class TokenCache:
    def __init__(self, *, max_entries: int = MAX_ENTRIES, max_age_seconds: float = MAX_AGE_SECONDS) -> None:
        self._max_entries = max_entries
        self._max_age = max_age_seconds
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # user ID -> the tokens of theirs remembered.
        self._by_user: dict[str, set[str]] = {}
        # Bumped by every revocation and every change of the stream's state.
        self.generation = 0
        # The revocation stream is subscribed: answers may be kept and used.
        self.live = False

    def __len__(self) -> int:
        return len(self._entries)

    # -- lookups --------------------------------------------------------------

    def get(self, token: str) -> pb.Device | None:
        """The remembered answer for ``token`` (a copy), or None."""
        if not self.live:
            return None
        entry = self._entries.get(token)
        if entry is None:
            return None
        if time.monotonic() - entry.stored_at >= self._max_age:
            self._drop(token)
            return None
        self._entries.move_to_end(token)
        device = pb.Device()
        device.CopyFrom(entry.device)
        return device

    def begin(self) -> int:
        """Call before asking the user API; hand the result to ``put``."""
        return self.generation

    def put(self, token: str, device: pb.Device, generation: int) -> None:
        """Remembers the answer of a lookup begun at ``generation``, unless
        anything was revoked (or the stream changed) since it began."""
        if not (self.live and device.cacheable and generation == self.generation and token):
            return
        kept = pb.Device()
        kept.CopyFrom(device)
        self._drop(token)
        self._entries[token] = _Entry(kept, time.monotonic())
        self._by_user.setdefault(device.user_id, set()).add(token)
        while len(self._entries) > self._max_entries:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    # -- revocations and the stream -----------------------------------------------

    def revoke(self, user_id: str, device_ids: Iterable[str] = ()) -> None:
        """Forgets the answers for these devices of ``user_id`` (none named:
        for every device of the user)."""
        self.generation += 1
        tokens = self._by_user.get(user_id)
        if not tokens:
            return
        wanted = set(device_ids)
        for token in list(tokens):
            entry = self._entries.get(token)
            if entry is None or not wanted or entry.device.device_id in wanted:
                self._drop(token)

    def revoke_localpart(self, localpart: str) -> None:
        """Forgets every answer for a user known by localpart only (the calls
        that name a local account that way)."""
        self.generation += 1
        prefix = f"@{localpart}:"
        for user_id in [u for u in self._by_user if u.startswith(prefix)]:
            self.revoke(user_id)

    def revoke_all(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._by_user.clear()

    def apply(self, revocation: pb.TokenRevocation) -> None:
        """One message of the revocation stream."""
        if revocation.subscribed:
            self.subscribed()
        elif revocation.all_users:
            self.revoke_all()
        elif revocation.user_id:
            self.revoke(revocation.user_id, revocation.device_ids)
        # Otherwise a heartbeat.

    def subscribed(self) -> None:
        """The stream is (again) subscribed: from now on answers may be kept."""
        self.revoke_all()
        self.live = True

    def disconnected(self) -> None:
        """The stream is gone: revocations may be missed, so nothing is kept."""
        self.live = False
        self.revoke_all()

    def _drop(self, token: str) -> None:
        entry = self._entries.pop(token, None)
        if entry is None:
            return
        tokens = self._by_user.get(entry.device.user_id)
        if tokens is not None:
            tokens.discard(token)
            if not tokens:
                del self._by_user[entry.device.user_id]
