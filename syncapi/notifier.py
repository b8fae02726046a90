"""Wakes long-polling /sync requests when something that concerns their user happens.

Each stream the sync API serves (``syncapi.tokens.STREAM_NAMES``: room
events, typing, receipts, presence, to-device) has its own positions. The
writers tell the notifier, after each commit, the stream, the new position
and the users it concerns (for a room event, the room's joined and invited
members and the target of a membership change; for typing and receipts the
room's members; for presence those sharing a room; for a to-device message
its target). The notifier keeps, per stream and local user, the last
position that concerned them, so an idle incremental /sync is a few
dictionary lookups whatever the number of rooms the user is in, and a
wake-up costs O(affected users).

Positions before the notifier started are unknown to it: ``has_news``
answers None for a ``since`` older than that, and the caller then looks in
the database. The same holds for positions another process wrote (several
sync API instances sharing one database, each consuming some partitions):
``note_database_position`` learns of them from a periodic read of the
database's positions (a position this process did not take), wakes every
waiter, and ``has_news`` answers None for a ``since`` before them, once; the
next token is past them. Typing lives in this process's memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from syncapi.tokens import STREAM_NAMES, StreamToken

PDU = "pdu"

# How many users' last positions each record below keeps (issue 6: a
# long-running server sees ever more users).
MAX_USERS_TRACKED = 50_000


class LastPositions:
    """User -> the last position that concerned them, for at most
    ``max_users`` users: those concerned least recently are forgotten. Not
    an LRU cache (a miss cannot be read back): the highest position
    forgotten is kept instead, and ``may_have_missed`` tells the callers
    that a user without an entry may have had news up to it, so their
    answer is "unknown" (look in the database), never a wrong "no news"."""

    def __init__(self, max_users: int = MAX_USERS_TRACKED) -> None:
        self._max_users = max_users
        self._positions: OrderedDict[str, int] = OrderedDict()
        self.forgotten_upto = 0

    def get(self, user_id: str) -> int | None:
        return self._positions.get(user_id)

    def raise_to(self, user_id: str, position: int) -> None:
        """Records ``position`` for the user unless they have a later one."""
        positions = self._positions
        last = positions.get(user_id)
        if last is None:
            positions[user_id] = position  # added last: no move needed
            self._forget_beyond_limit()
        elif last < position:
            positions[user_id] = position
            positions.move_to_end(user_id)

    def raise_all(self, user_ids: Iterable[str], position: int, suffix: str) -> None:
        """``raise_to`` for each of the users whose ID ends with ``suffix``,
        in one loop (a room event in a large room concerns every member: the
        per-user cost is what a wake-up costs)."""
        positions = self._positions
        get, move_to_end = positions.get, positions.move_to_end
        added = False
        for user_id in user_ids:
            if not user_id.endswith(suffix):
                continue
            last = get(user_id)
            if last is None:
                positions[user_id] = position  # added last: no move needed
                added = True
            elif last < position:
                positions[user_id] = position
                move_to_end(user_id)
        if added:
            self._forget_beyond_limit()

    def _forget_beyond_limit(self) -> None:
        """The least recently concerned go first (those raised just now are last)."""
        positions = self._positions
        while len(positions) > self._max_users:
            _, forgotten = positions.popitem(last=False)
            self.forgotten_upto = max(self.forgotten_upto, forgotten)

    def may_have_missed(self, user_id: str, after: int) -> bool:
        """Whether a forgotten position after ``after`` may have been the user's."""
        return after < self.forgotten_upto and user_id not in self._positions

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._positions

    def __len__(self) -> int:
        return len(self._positions)


class _Stream:
    def __init__(self) -> None:
        self.started_at = 0
        self.position = 0
        self.last_position = LastPositions()
        # The highest position written by someone else than this process.
        self.external = 0
        # Positions this process took and the database position last checked.
        self.taken: set[int] = set()
        self.checked = 0


class Notifier:
    def __init__(self, server_name: str) -> None:
        self._suffix = ":" + server_name
        self._streams = {name: _Stream() for name in STREAM_NAMES}
        self._waiters: dict[str, set[asyncio.Event]] = {}
        # Per waiting user, what their waiters asked to be told when news is
        # being written (``news_coming``).
        self._preparing: dict[str, set[Callable[[], None]]] = {}
        # Per local user, the last room-event position that changed their own
        # membership or invites (a subset of the room-event stream's news).
        self._membership_position = LastPositions()
        # Whether the writer tells memberships_changing of every change (else
        # membership_news always answers "unknown").
        self.tracks_memberships = False

    @property
    def position(self) -> int:
        """The highest room-event stream position known to be committed."""
        return self._streams[PDU].position

    def stream_position(self, stream: str) -> int:
        return self._streams[stream].position

    def current_token(self) -> StreamToken:
        """Every stream's highest known position."""
        return StreamToken(*(self._streams[name].position for name in STREAM_NAMES))

    def start_at(self, position: int, stream: str = PDU) -> None:
        """Called once per stream at startup with the database's position."""
        state = self._streams[stream]
        state.started_at = position
        state.position = max(state.position, position)

    def on_new_data(self, position: int, user_ids: Iterable[str], stream: str = PDU) -> None:
        """Records that ``position`` of ``stream`` is committed and concerns
        ``user_ids``; wakes their waiters."""
        state = self._streams[stream]
        state.position = max(state.position, position)
        # Only local users sync here.
        state.last_position.raise_all(user_ids, position, self._suffix)
        waiters = self._waiters
        if not waiters:
            return
        for user_id in _waiting(waiters, user_ids):
            for waiter in waiters[user_id]:
                waiter.set()

    def news_coming(self, user_ids: Iterable[str]) -> None:
        """News concerning ``user_ids`` is being written (``on_new_data``
        follows once it is committed): their waiting long polls may start
        the part of their answer that is not read from this database (the
        device's key counts, a call to the user API in the split
        deployment), so that it is in by the time the answer is built."""
        preparing = self._preparing
        if not preparing:
            return
        for user_id in _waiting(preparing, user_ids):
            for prepare in list(preparing[user_id]):
                prepare()

    def memberships_changing(self, position: int, user_ids: Iterable[str]) -> None:
        """The write taking room-event ``position`` (not committed yet)
        changes these users' own memberships or invites. Told before the
        commit, so that a /sync whose token covers the position (however
        late its wake-up comes) knows of it: see ``membership_news``."""
        for user_id in user_ids:
            if user_id.endswith(self._suffix):
                self._membership_position.raise_to(user_id, position)

    def positions_taken(self, positions: range, stream: str = PDU) -> None:
        """This process took these positions (they may not be committed yet)."""
        self._streams[stream].taken.update(positions)

    def note_database_position(self, position: int, stream: str = PDU) -> None:
        """The database's position of ``stream``, read periodically. A
        committed position this process did not take was written by another
        process: whom it concerns is unknown, so every waiter looks in the
        database."""
        state = self._streams[stream]
        checked = max(state.checked, state.started_at)
        if position <= checked:
            return
        foreign = any(p not in state.taken for p in range(checked + 1, position + 1))
        state.taken.difference_update(range(checked + 1, position + 1))
        state.checked = position
        if not foreign:
            return
        state.external = max(state.external, position)
        state.position = max(state.position, position)
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    def note_database_positions(self, positions: Mapping[str, int]) -> None:
        """``note_database_position`` for each stream the database counts."""
        for stream, position in positions.items():
            if stream in self._streams:
                self.note_database_position(position, stream)

    def has_news(self, user_id: str, since: StreamToken | int) -> bool | None:
        """Whether anything after ``since`` concerns the user; None when
        unknown. An int is a room-event position (the other streams are not
        asked about)."""
        token = since if isinstance(since, StreamToken) else None
        names = STREAM_NAMES if token is not None else (PDU,)
        unknown = False
        for name in names:
            state = self._streams[name]
            after = token.position(name) if token is not None else since if isinstance(since, int) else 0
            last = state.last_position.get(user_id)
            if last is not None and last > after:
                return True
            if (after < state.started_at or after < state.external
                    or state.last_position.may_have_missed(user_id, after)):
                unknown = True
        return None if unknown else False

    def stream_has_news(self, user_id: str, stream: str, after: int) -> bool | None:
        """Whether anything after ``after`` on ``stream`` concerns the user;
        None when unknown (a position from before this process started, or
        written by another process)."""
        state = self._streams[stream]
        last = state.last_position.get(user_id)
        if last is not None and last > after:
            return True
        if (after < state.started_at or after < state.external
                or state.last_position.may_have_missed(user_id, after)):
            return None
        return False

    def membership_news(self, user_id: str, after: int) -> bool | None:
        """Whether the user's own membership or invites changed after
        room-event position ``after``; None when unknown (as ``stream_has_news``)."""
        if not self.tracks_memberships:
            return None
        last = self._membership_position.get(user_id)
        if last is not None and last > after:
            return True
        state = self._streams[PDU]
        if (after < state.started_at or after < state.external
                or self._membership_position.may_have_missed(user_id, after)):
            return None
        return False

    async def wait_for_news(self, user_id: str, since: StreamToken | int, timeout: float, *,
                            on_news_coming: Callable[[], None] | None = None) -> bool:
        """Waits up to ``timeout`` seconds for news after ``since``; whether
        some came. ``on_news_coming`` is called meanwhile whenever news for
        the user is being written (``news_coming``); the news may still turn
        out to be none of theirs."""
        if self.has_news(user_id, since) is not False:
            return True
        waiter = asyncio.Event()
        self._waiters.setdefault(user_id, set()).add(waiter)
        if on_news_coming is not None:
            self._preparing.setdefault(user_id, set()).add(on_news_coming)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                # asyncio.timeout, not wait_for: no task of its own, so the
                # woken /sync runs in the loop turn after the wake-up.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await waiter.wait()
                waiter.clear()
                if self.has_news(user_id, since) is not False:
                    return True
        finally:
            waiters = self._waiters.get(user_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[user_id]
            preparing = self._preparing.get(user_id)
            if preparing is not None and on_news_coming is not None:
                preparing.discard(on_news_coming)
                if not preparing:
                    del self._preparing[user_id]


def _waiting(waiting: Mapping[str, object], user_ids: Iterable[str]) -> list[str]:
    """Those of ``user_ids`` in ``waiting``."""
    # Those waiting are usually far fewer than a large room's members.
    if isinstance(user_ids, (set, frozenset)) and len(waiting) < len(user_ids):
        return [user_id for user_id in waiting if user_id in user_ids]
    return [user_id for user_id in user_ids if user_id in waiting]
