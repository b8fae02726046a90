"""Wakes long-polling /sync requests when something that concerns their user happens.

The consumer tells the notifier, after each commit, the new stream position
and the users it concerns (the room's joined and invited members, and the
target of a membership change). The notifier keeps, per local user, the last
position that concerned them, so an idle incremental /sync is one dictionary
lookup whatever the number of rooms the user is in, and a wake-up costs
O(affected users).

Positions before the notifier started are unknown to it: ``has_news``
answers None for a ``since`` older than that, and the caller then looks in
the database. The same holds for positions another process wrote (several
sync API instances sharing one database, each consuming some partitions):
``note_database_position`` learns of them from a periodic read of the
database's position (a position this process did not take), wakes every
waiter, and ``has_news`` answers None for a ``since`` before them, once; the
next token is past them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


class Notifier:
    def __init__(self, server_name: str) -> None:
        self._suffix = ":" + server_name
        self._started_at = 0
        self._position = 0
        self._last_position: dict[str, int] = {}
        self._waiters: dict[str, set[asyncio.Event]] = {}
        # The highest position written by someone else than this process.
        self._external = 0
        # Positions this process took and the database position last checked.
        self._taken: set[int] = set()
        self._checked = 0

    @property
    def position(self) -> int:
        """The highest stream position known to be committed."""
        return self._position

    def start_at(self, position: int) -> None:
        """Called once at startup with the database's position."""
        self._started_at = position
        self._position = max(self._position, position)

    def on_new_data(self, position: int, user_ids: Iterable[str]) -> None:
        """Records that ``position`` is committed and concerns ``user_ids``; wakes their waiters."""
        self._position = max(self._position, position)
        for user_id in user_ids:
            if not user_id.endswith(self._suffix):
                continue  # only local users sync here
            if self._last_position.get(user_id, 0) < position:
                self._last_position[user_id] = position
            for waiter in self._waiters.get(user_id, ()):
                waiter.set()

    def positions_taken(self, positions: range) -> None:
        """This process took these positions (they may not be committed yet)."""
        self._taken.update(positions)

    def note_database_position(self, position: int) -> None:
        """The database's position, read periodically. A committed position
        this process did not take was written by another process: whom it
        concerns is unknown, so every waiter looks in the database."""
        checked = max(self._checked, self._started_at)
        if position <= checked:
            return
        foreign = any(p not in self._taken for p in range(checked + 1, position + 1))
        self._taken.difference_update(range(checked + 1, position + 1))
        self._checked = position
        if not foreign:
            return
        self._external = max(self._external, position)
        self._position = max(self._position, position)
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    def has_news(self, user_id: str, since: int) -> bool | None:
        """Whether anything after ``since`` concerns the user; None when unknown."""
        last = self._last_position.get(user_id)
        if last is not None and last > since:
            return True
        if since < self._started_at or since < self._external:
            return None
        return False

    async def wait_for_news(self, user_id: str, since: int, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for news after ``since``; whether some came."""
        if self.has_news(user_id, since) is not False:
            return True
        waiter = asyncio.Event()
        self._waiters.setdefault(user_id, set()).add(waiter)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), remaining)
                waiter.clear()
                if self.has_news(user_id, since) is not False:
                    return True
        finally:
            waiters = self._waiters.get(user_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[user_id]
