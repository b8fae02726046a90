"""Who is typing in which room (modules/typing_notifications.md), kept in
this process's memory: typing is worth seconds, so it is never stored.

Every visible change (someone starts, stops, or their timeout passes) takes
the next position of the typing stream; a room remembers the position of its
last change, so /sync sends a room's whole list of typers when it changed
since the client's token. Positions restart at zero with the process (the
sync handler treats a token from before as "send the current typers").

Several sync API instances each know the typing of the rooms whose
partitions of ``clientapi.typing`` they consume.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

# Rooms remembered with their last change; beyond this, the rooms where
# nobody types any more are forgotten (a client that slept through a
# "stopped typing" drops it after the timeout anyway).
MAX_REMEMBERED_ROOMS = 10_000


def now_ms() -> int:
    return int(time.time() * 1000)


class TypingCache:
    def __init__(self) -> None:
        # room ID -> user ID -> when their typing expires (ms since the epoch)
        self._typers: dict[str, dict[str, int]] = {}
        # room ID -> the typing position of its last visible change
        self._changed_at: dict[str, int] = {}
        self.position = 0

    def update(self, room_id: str, user_id: str, typing: bool, expires_at_ms: int,
               now: int | None = None) -> int | None:
        """Records a typing notification; the new position when the room's
        list of typers changed, None when it did not (a renewal)."""
        now = now_ms() if now is None else now
        typers = self._typers.setdefault(room_id, {})
        if typing and expires_at_ms > now:
            renewed = user_id in typers
            typers[user_id] = expires_at_ms
            if renewed:
                return None
        else:
            if typers.pop(user_id, None) is None:
                if not typers:
                    del self._typers[room_id]
                return None
            if not typers:
                del self._typers[room_id]
        return self._changed(room_id)

    def expire(self, now: int | None = None) -> list[tuple[str, int]]:
        """Drops the typers whose timeout passed; answers the rooms that
        changed, with their new positions."""
        now = now_ms() if now is None else now
        changed: list[tuple[str, int]] = []
        for room_id in list(self._typers):
            typers = self._typers[room_id]
            expired = [user_id for user_id, expires in typers.items() if expires <= now]
            if not expired:
                continue
            for user_id in expired:
                del typers[user_id]
            if not typers:
                del self._typers[room_id]
            changed.append((room_id, self._changed(room_id)))
        return changed

    def next_expiry(self) -> int | None:
        """When the next typer's timeout passes (ms), None when nobody types."""
        return min((min(t.values()) for t in self._typers.values() if t), default=None)

    def typers(self, room_id: str, now: int | None = None) -> list[str]:
        now = now_ms() if now is None else now
        return sorted(u for u, expires in self._typers.get(room_id, {}).items() if expires > now)

    def rooms_changed(self, after: int, upto: int, room_ids: Iterable[str] | None = None) -> set[str]:
        """The rooms whose typers changed in ``(after, upto]`` (among ``room_ids``)."""
        candidates = self._changed_at if room_ids is None else {
            r: self._changed_at[r] for r in room_ids if r in self._changed_at}
        return {room_id for room_id, position in candidates.items() if after < position <= upto}

    def rooms_typing(self) -> set[str]:
        return set(self._typers)

    def _changed(self, room_id: str) -> int:
        self.position += 1
        self._changed_at[room_id] = self.position
        if len(self._changed_at) > MAX_REMEMBERED_ROOMS:
            self._changed_at = {r: p for r, p in self._changed_at.items() if r in self._typers or r == room_id}
        return self.position
