"""Builds /sync responses from the read model
(data/api/client-server/sync.yaml; content/client-server-api, "Syncing").

An initial sync (no ``since``, or ``full_state``) returns every joined room
with its state at the start of the returned timeline and the last N timeline
events. An incremental sync returns the rooms with news since ``since``; a
room joined since then comes as if initial. ``limited`` is set when more
events happened than the timeline holds, and ``state`` then carries the
state changes between ``since`` and the start of the timeline.

Besides room events, /sync serves the ephemeral and per-device streams, each
with its own position in the token: ``rooms.join.*.ephemeral`` (m.typing,
the room's current typers; m.receipt, the receipts since the token, a user's
m.read.private to them only), top-level ``presence`` (of the user and
everyone sharing a room with them) and ``to_device`` (the device's inbox, up to
``TO_DEVICE_LIMIT`` a time; a message is deleted once the device syncs with
a token past it).

Account data (its own stream, from the user API's log) fills the top-level
``account_data`` (global data; ``m.push_rules`` merged with the
server-default rules, and those defaults on an initial sync before the user
changed any) and ``rooms.join.*.account_data`` (room data, e.g. ``m.tag``);
a joined room whose only news is account data comes with an empty
timeline. Events of the users in ``m.ignored_user_list`` are left out of
timelines (their state events stay, as the spec asks), and so are their
invites.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from common import json_codec
from common.lru_cache import LRUCache
from matrixlib.push_rules import default_ruleset, merge_with_defaults
from syncapi.filters import EventFilter, Filter, apply_event_fields
from syncapi.internal.client_events import Requester, now_ms, stripped_state, to_client_event
from syncapi.internal.knocks import knocked_rooms
from syncapi.internal.lazy_members import DeviceMembers, LazyLoadedMembers
from syncapi.internal.push import unread_counts
from syncapi.internal.relations import Aggregations, attach, bundle
from syncapi.internal.typing import TypingCache
from syncapi.internal.visibility import MembershipSpan, RoomVisibility, visibility_by_room
from syncapi.notifier import Notifier
from syncapi.storage.database import Reader, SyncDatabase
from syncapi.storage.tables import forgotten_rooms as forgotten_t
from syncapi.storage.tables.account_data import StoredAccountData
from syncapi.storage.tables.current_state import MEMBER, StateEntry
from syncapi.storage.tables.events import StoredEvent, filter_clause
from syncapi.storage.tables.presence import StoredPresence
from syncapi.storage.tables.receipts import FULLY_READ, StoredReceipt
from syncapi.tokens import STREAM_NAMES, StreamToken, TopologyToken

# Bounds of the per-user memos below (issue 6: a long-running server sees
# ever more users). A forgotten entry only costs one database read or write.
MAX_IGNORED_MEMOS = 10_000
MAX_TO_DEVICE_ACK_MEMOS = 10_000

MAX_HEROES = 5
PUSH_RULES = "m.push_rules"
IGNORED_USERS = "m.ignored_user_list"
ACCOUNT_DATA = "account_data"
# A woken sync's new events are read with their rooms when there are at most this many.
NEWS_IN_ONE_STATEMENT = 100
# Rooms read and built together in one /sync (see _Builder.build).
ROOMS_BUILT_AT_ONCE = 100
# To-device messages per response; the rest come with the next sync.
TO_DEVICE_LIMIT = 100
# A user active this recently (ms) is "currently_active".
CURRENTLY_ACTIVE_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class SyncRequest:
    requester: Requester
    since: StreamToken | None
    full_state: bool
    filter: Filter
    timeout_ms: int
    use_state_after: bool = False
    # Room events in the response as JSON text (json_codec.serialised), for a
    # caller that only writes the body out with json_codec.dumps.
    serialised_events: bool = False
    # Called once the response is going to be built (at once, or when a long
    # poll has news), before it is: the caller can start what it adds to the
    # response afterwards (a query to another component) alongside.
    on_building: Callable[[], None] | None = None
    # Called when news for a waiting long poll is being written (see
    # ``Notifier.news_coming``): it may start those queries sooner still.
    on_news_coming: Callable[[], None] | None = None


@dataclass(frozen=True)
class _RoomWindow:
    """What to return for one room: the stream range and whether with full state."""

    room_id: str
    since: int | None
    upto: int
    full_state: bool


@dataclass(frozen=True)
class _RoomTimeline:
    """One room's timeline as the response carries it, before its state is read."""

    window: _RoomWindow
    vis: RoomVisibility
    events: list[StoredEvent]
    limited: bool
    # The position the state section is taken at: just before the timeline.
    start: int


class SyncHandler:
    def __init__(self, database: SyncDatabase, notifier: Notifier, typing: TypingCache | None = None) -> None:
        self._db = database
        self._notifier = notifier
        self._typing = typing if typing is not None else TypingCache()
        self._started = False
        self.lazy_members = LazyLoadedMembers()
        # user -> (account data position read at, their m.ignored_user_list):
        # kept while the user's account data does not move. A forgotten
        # user's list is read from the database again.
        self._ignored: LRUCache[str, tuple[int, frozenset[str]]] = LRUCache(MAX_IGNORED_MEMOS)
        # (user, device) -> the to-device position up to which its
        # acknowledged messages were deleted by this process. Forgetting one
        # only repeats the delete (of the same acknowledged rows: a no-op),
        # so nothing unacknowledged is dropped and nothing deleted comes back.
        self._to_device_acked: LRUCache[tuple[str, str], int] = LRUCache(MAX_TO_DEVICE_ACK_MEMOS)

    async def ensure_started(self) -> None:
        """The notifier starts at the database's positions (before the consumers have run)."""
        if not self._started:
            for stream, position in (await self._db.current_positions()).items():
                self._notifier.start_at(position, stream)
            self._started = True

    async def sync(self, request: SyncRequest) -> dict[str, Any]:
        await self.ensure_started()
        user_id = request.requester.user_id
        since_token = request.since
        if since_token is not None:
            # A position from the future (a database restored from backup, typing
            # from before a restart): that stream starts over from now.
            current = self._notifier.current_token()
            since_token = StreamToken(*(min(since_token.position(name), current.position(name))
                                        for name in STREAM_NAMES))
        if since_token is not None and not request.full_state:
            has_news = await self._notifier.wait_for_news(user_id, since_token, request.timeout_ms / 1000,
                                                          on_news_coming=request.on_news_coming)
            if not has_news:
                # Idle: nothing concerns this user, whatever the number of their rooms.
                return _response(self._notifier.current_token(), {}, {}, {})
        if request.on_building is not None:
            request.on_building()
        upto = self._notifier.current_token()
        device_id = request.requester.device_id
        if since_token is not None and since_token.to_device > 0 and device_id:
            # The device has what was sent up to its token: acknowledged
            # (once: positions are committed in order, so nothing at or
            # below a position already cleaned up can arrive later).
            if since_token.to_device > (self._to_device_acked.get((user_id, device_id)) or 0):
                await self._db.delete_to_device(user_id, device_id, upto=since_token.to_device)
                self._to_device_acked.put((user_id, device_id), since_token.to_device)
        # Whether the user's own memberships or invites may have changed
        # since the token (None: unknown, look in the database).
        membership_news = None if since_token is None else self._notifier.membership_news(
            user_id, since_token.pdu)
        # The ignored users are read again only when the user's account data moved.
        cached = self._ignored.get(user_id)
        ignored: set[str] | None = None
        if cached is not None and self._notifier.stream_has_news(user_id, ACCOUNT_DATA, cached[0]) is False:
            ignored = set(cached[1])
        async with self._db.read() as reader:
            builder = _Builder(reader, request, since_token, upto, self._typing, self.lazy_members,
                               ignored=ignored, membership_news=membership_news)
            body = await builder.build()
        if builder.ignored_read:
            self._ignored.put(user_id, (upto.account_data, frozenset(builder.ignored)))
        return body


class _Builder:
    def __init__(self, reader: Reader, request: SyncRequest, since_token: StreamToken | None,
                 upto_token: StreamToken, typing: TypingCache, lazy_members: LazyLoadedMembers | None = None,
                 *, ignored: set[str] | None = None, membership_news: bool | None = None) -> None:
        self.r = reader
        self.request = request
        self.requester = request.requester
        self.user_id = request.requester.user_id
        self.since_token = since_token
        self.upto_token = upto_token
        self.typing = typing
        # The room-event positions.
        self.since = since_token.pdu if since_token is not None else None
        self.upto = upto_token.pdu
        self.filter = request.filter
        self.initial = since_token is None or request.full_state
        self.now = now_ms()
        self.ignored: set[str] = ignored if ignored is not None else set()
        # Whether `ignored` was read here (not given): the caller keeps it.
        self.ignored_read = ignored is None
        # False when the user's memberships and invites are known not to have
        # changed since the token: those reads are skipped.
        self.membership_news = membership_news
        # The rooms' recent events, read for all of them at once.
        self.prefetched: dict[str, list[StoredEvent]] = {}
        # The unread counts of some rooms (those rooms, their count rows),
        # read with the rooms' news.
        self.prefetched_counts: tuple[set[str], list[tuple[str, str, int, int]]] | None = None
        # Rooms sent whole: their state entries, summaries and the stored
        # events those name, read for all of them at once.
        self.prefetched_state: dict[str, list[StateEntry]] = {}
        self.prefetched_summaries: dict[str, dict[str, Any]] = {}
        self.stored_events: dict[str, StoredEvent] = {}
        # The bundled aggregations of those rooms' limited timelines, and which rooms they cover.
        self.prefetched_aggregations: Aggregations = {}
        self.aggregated_rooms: set[str] = set()
        # Rooms whose visibility is known only for the events after `since`
        # (the user was joined throughout): the full history is read if needed.
        self.joined_throughout: set[str] = set()
        # The member events this device was sent already, when lazy-loading
        # without redundant members (a new sync sequence starts afresh).
        self.sent_members: DeviceMembers | None = None
        state_filter = self.filter.room.state
        if (lazy_members is not None and state_filter.lazy_load_members
                and not state_filter.include_redundant_members and self.requester.device_id):
            self.sent_members = lazy_members.for_device(self.user_id, self.requester.device_id,
                                                        new_sequence=self.initial)

    async def build(self) -> dict[str, Any]:
        room_filter = self.filter.room
        account_data = await self._account_data()
        if IGNORED_USERS in account_data.global_data:
            # Changed since the token (or an initial sync): what the response says is in force.
            self.ignored = ignored_users_of(account_data.global_data[IGNORED_USERS])
            self.ignored_read = True
        elif self.ignored_read:
            self.ignored = await self.r.ignored_users(self.user_id)
        # An initial sync reads all the user's memberships; an incremental one
        # only those that changed since `since` (its cost follows the news,
        # not the number of rooms), none when the notifier knows there are none.
        memberships: list[StateEntry] = []
        if self.initial or self.membership_news is not False:
            memberships = await self.r.user_memberships(
                self.user_id, ["join", "leave", "ban"], added_after=None if self.initial else self.since)
        memberships = [m for m in memberships if m.added_pos <= self.upto and room_filter.allows_room(m.room_id)]
        joined = [m for m in memberships if m.membership == "join"]
        left = [m for m in memberships if m.membership != "join" and (
            (self.since is not None and m.added_pos > self.since)
            or (self.since is None and room_filter.include_leave))]
        if left:
            # Forgotten rooms are left out, unless a newer membership brought them back.
            forgotten = await forgotten_t.select_forgotten_rooms(self.r.conn, self.user_id)
            left = [m for m in left if forgotten.get(m.room_id) != m.event_id]

        windows: list[_RoomWindow]
        if self.initial:
            # With full_state and a `since`, the timeline still starts at `since`.
            windows = [_RoomWindow(m.room_id, self.since, self.upto, True) for m in joined]
        else:
            assert self.since is not None
            newly_joined = {m.room_id for m in joined}
            news = None
            if filter_clause(self.filter.room.timeline) is None:
                # No SQL filter on the timeline: the few new events of a woken
                # sync name the rooms and are their timelines, one statement.
                # (On PostgreSQL the same statement reads those rooms' unread counts.)
                news = await self.r.joined_rooms_news_and_counts(self.user_id, after=self.since, upto=self.upto,
                                                                 cap=NEWS_IN_ONE_STATEMENT)
            if news is None:
                with_events = await self.r.joined_rooms_with_events_since(self.user_id, after=self.since,
                                                                          upto=self.upto)
            else:
                with_events, new_events, counts = news
                if counts is not None:
                    self.prefetched_counts = (set(with_events), counts)
            changed = {room_id for room_id in with_events.keys() - newly_joined if room_filter.allows_room(room_id)}
            if news is not None:
                for room_id in changed:
                    # The last limit + 1 (limit 0 where the timeline filter leaves the room out).
                    keep = (self.filter.timeline_limit if room_filter.timeline.allows_room(room_id) else 0) + 1
                    self.prefetched[room_id] = new_events[room_id][-keep:]
            # Joined since before the token: every event after it is visible.
            self.joined_throughout = {room_id for room_id in changed if with_events[room_id] <= self.since}
            # A room joined since `since` comes as in an initial sync.
            windows = [_RoomWindow(room_id, None, self.upto, True) for room_id in sorted(newly_joined)]
            windows += [_RoomWindow(room_id, self.since, self.upto, False) for room_id in sorted(changed)]
        ephemeral = await self._ephemeral({w.room_id for w in windows if w.full_state})
        if not self.initial:
            # Rooms with only ephemeral news come with an empty timeline.
            have = {w.room_id for w in windows}
            extra = {room_id for room_id in ephemeral.rooms() - have if room_filter.allows_room(room_id)}
            windows += [_RoomWindow(room_id, self.since, self.upto, False) for room_id in sorted(extra)]
            have |= extra
            # And so do joined rooms with only account data news.
            extra = {room_id for room_id in account_data.rooms - have if room_filter.allows_room(room_id)}
            if extra:
                memberships_now = await self.r.memberships_in_rooms(self.user_id, sorted(extra))
                windows += [_RoomWindow(room_id, self.since, self.upto, False)
                            for room_id in sorted(extra) if memberships_now.get(room_id) == "join"]
        # All the user's membership history for an initial sync, else that of
        # the rooms in play (but those they were joined to throughout).
        visibility: dict[str, RoomVisibility] = {}
        if self.initial:
            visibility = visibility_by_room(self.user_id, await self.r.membership_history(self.user_id))
        else:
            rooms = [w.room_id for w in windows if w.room_id not in self.joined_throughout]
            rooms += [m.room_id for m in left]
            if rooms:
                visibility = visibility_by_room(self.user_id, await self.r.membership_history(self.user_id, rooms))
            for room_id in self.joined_throughout:
                assert self.since is not None
                visibility[room_id] = RoomVisibility(self.user_id, [MembershipSpan("join", self.since, None)])
        if not self.initial:
            await self._whole_account_data_of(account_data, [w.room_id for w in windows if w.full_state])

        join: dict[str, Any] = {}
        # Rooms are read and built a chunk at a time: what a chunk read (its
        # events, their state) is dropped once its entries are built, so a
        # sync of thousands of rooms does not hold all of it at once.
        for first in range(0, len(windows), ROOMS_BUILT_AT_ONCE):
            chunk = windows[first:first + ROOMS_BUILT_AT_ONCE]
            await self._prefetch_recent_events(chunk)
            timelines = [await self._timeline(window, visibility.get(window.room_id)
                                              or RoomVisibility(self.user_id, [])) for window in chunk]
            await self._prefetch_whole_rooms([t for t in timelines if t.window.full_state])
            for room_timeline in timelines:
                window = room_timeline.window
                entry, member_news = await self._room(room_timeline)
                # The summary may be left out when it has not changed: only
                # membership changes (in the timeline or the gap's state) change it.
                if window.full_state or member_news:
                    entry["summary"] = await self._summary(window.room_id)
                entry["ephemeral"] = {"events": ephemeral.events(window.room_id, self.filter.room.ephemeral)}
                entry["account_data"] = {"events": account_data.room_events(window.room_id,
                                                                            self.filter.room.account_data)}
                join[window.room_id] = entry
            del timelines
            self.stored_events.clear()
        await self._add_unread_counts(join)

        leave: dict[str, Any] = {}
        for m in left:
            vis = visibility.get(m.room_id) or RoomVisibility(self.user_id, [])
            window = _RoomWindow(m.room_id, self.since, m.added_pos, self.initial)
            entry, _ = await self._room(await self._timeline(window, vis))
            entry["account_data"] = {"events": account_data.room_events(m.room_id,
                                                                        self.filter.room.account_data)}
            leave[m.room_id] = entry

        invite: dict[str, Any] = {}
        after = 0 if self.initial else (self.since or 0)
        invites = [] if not self.initial and self.membership_news is False else await self.r.active_invites(
            self.user_id, after=after, upto=self.upto)
        for stored_invite in invites:
            if not room_filter.allows_room(stored_invite.room_id):
                continue
            if self.ignored and json.loads(stored_invite.event_json).get("sender") in self.ignored:
                continue
            invite[stored_invite.room_id] = {
                "invite_state": {"events": stripped_state(json.loads(stored_invite.invite_state_json))}}

        if self.since is not None and self.membership_news is not False:
            await self._rejected_invites(leave, join, invite)
        knock = {} if not self.initial and self.membership_news is False else await knocked_rooms(
            self.r, self.user_id, after=None if self.initial else self.since, upto=self.upto, sync_filter=self.filter)
        presence = await self._presence()
        to_device, to_device_position = await self._to_device()
        token = replace(self.upto_token, to_device=to_device_position)
        return _response(token, join, invite, leave, presence=presence, to_device=to_device,
                         account_data=account_data.global_events(self.filter.account_data), knock=knock)

    async def _prefetch_recent_events(self, windows: list[_RoomWindow]) -> None:
        """The joined rooms' recent events, in one statement for the rooms
        sharing a range (all of them in an incremental sync)."""
        timeline_filter = self.filter.room.timeline
        limit = self.filter.timeline_limit
        by_range: dict[tuple[int, int], list[str]] = defaultdict(list)
        for window in windows:
            if timeline_filter.allows_room(window.room_id) and window.room_id not in self.prefetched:
                by_range[(window.since or 0, window.upto)].append(window.room_id)
        for (after, upto), room_ids in by_range.items():
            if len(room_ids) > 1 or not self.initial:
                self.prefetched.update(await self.r.recent_events_in_rooms(
                    room_ids, after=after, upto=upto, limit=limit + 1, event_filter=timeline_filter))

    async def _add_unread_counts(self, join: dict[str, Any]) -> None:
        """Each joined room's notification counts (push.md, "Receiving
        notifications"); per thread with the timeline filter's flag."""
        by_thread = self.filter.room.timeline.unread_thread_notifications
        for room_id, counts in (await unread_counts(self.r, self.user_id, sorted(join),
                                                    known=self.prefetched_counts)).items():
            join[room_id].update(counts.as_sync(by_thread))

    async def _account_data(self) -> _AccountData:
        """The account data changed since the token (all of it, initially)."""
        since = self.since_token
        after = 0 if since is None or self.initial else since.account_data
        found = _AccountData(self.user_id)
        if after < self.upto_token.account_data:
            found.add(await self.r.account_data_changes(self.user_id, after=after,
                                                        upto=self.upto_token.account_data))
        if self.initial and PUSH_RULES not in found.global_data:
            # Every client starts with the push rules in force.
            found.global_data[PUSH_RULES] = {"global": default_ruleset(self.user_id)}
        return found

    async def _whole_account_data_of(self, account_data: _AccountData, room_ids: list[str]) -> None:
        """A room joined since the token comes as in an initial sync, its
        account data included: a tag set before this read model saw the
        join (the two arrive by different logs) would otherwise never be
        sent, its position being behind the token by then."""
        wanted = set(room_ids) - account_data.rooms
        if not wanted:
            return
        everything = await self.r.account_data_changes(self.user_id, after=0, upto=self.upto_token.account_data)
        account_data.add([change for change in everything if change.room_id in wanted])

    # -- the ephemeral and per-device streams ------------------------------------------------

    async def _ephemeral(self, full_rooms: set[str]) -> _Ephemeral:
        """The current typers and every receipt of the rooms sent whole
        (an initial sync, a room joined since the token); in an incremental
        sync also what changed since the token in the user's other rooms."""
        found = _Ephemeral(self.user_id)
        for room_id in full_rooms:
            typers = self.typing.typers(room_id)
            if typers:
                found.typing[room_id] = typers
        if full_rooms:
            found.add_receipts(await self.r.visible_receipts(
                self.user_id, after=0, upto=self.upto_token.receipt, room_ids=sorted(full_rooms)))
        since = self.since_token
        if self.initial or since is None:
            return found
        typing_rooms = self.typing.rooms_changed(since.typing, self.upto_token.typing)
        if typing_rooms:
            memberships = await self.r.memberships_in_rooms(self.user_id, sorted(typing_rooms))
            for room_id in typing_rooms:
                if memberships.get(room_id) == "join":
                    found.typing[room_id] = self.typing.typers(room_id)
        if since.receipt < self.upto_token.receipt:
            found.add_receipts(await self.r.visible_receipts(
                self.user_id, after=since.receipt, upto=self.upto_token.receipt))
        return found

    async def _presence(self) -> list[dict[str, Any]]:
        since = self.since_token
        after = 0 if since is None or self.initial else since.presence
        if after >= self.upto_token.presence:
            return []
        presence_filter = self.filter.presence
        return [_presence_event(p, self.now) for p in
                await self.r.visible_presence(self.user_id, after=after, upto=self.upto_token.presence)
                if presence_filter.allows("m.presence", p.user_id)]

    async def _to_device(self) -> tuple[list[dict[str, Any]], int]:
        """The device's pending messages, and the to-device position the
        next token carries (short of the stream's when some are left)."""
        device_id = self.requester.device_id
        if not device_id:
            return [], self.upto_token.to_device
        since = self.since_token
        if since is not None and since.to_device >= self.upto_token.to_device:
            # Those up to the token were acknowledged (deleted): none is left.
            return [], self.upto_token.to_device
        messages = await self.r.to_device_messages(self.user_id, device_id, upto=self.upto_token.to_device,
                                                   limit=TO_DEVICE_LIMIT)
        position = self.upto_token.to_device
        if len(messages) == TO_DEVICE_LIMIT:
            position = messages[-1].stream_pos
        return [{"type": m.event_type, "sender": m.sender, "content": json.loads(m.content_json)}
                for m in messages], position

    async def _rejected_invites(self, leave: dict[str, Any], join: dict[str, Any],
                                invite: dict[str, Any]) -> None:
        """Invites retired without the user ever being in the room (rejected,
        or revoked) go to ``leave`` so the client drops the invite."""
        assert self.since is not None
        retired = await self.r.retired_invites(self.user_id, after=self.since, upto=self.upto)
        for stored_invite in retired:
            room_id = stored_invite.room_id
            if room_id in leave or room_id in join or room_id in invite:
                continue
            if stored_invite.retired_membership == "join":
                continue
            if not self.filter.room.allows_room(room_id):
                continue
            timeline: list[dict[str, Any]] = []
            if stored_invite.retired_by_event_id:
                found = await self.r.events_by_ids([stored_invite.retired_by_event_id])
                for stored in found.values():
                    timeline.append(to_client_event(stored, self.requester, include_room_id=False,
                                                    now=self.now))
            leave[room_id] = {"state": {"events": []},
                              "timeline": {"events": timeline, "limited": False},
                              "account_data": {"events": []}}

    async def _prefetch_whole_rooms(self, timelines: list[_RoomTimeline]) -> None:
        """The state and summaries of the rooms sent whole (every room of an
        initial sync), each kind read for all the rooms at once rather than
        room by room; ``_state``, ``_state_after`` and ``_summary`` take them."""
        if len(timelines) < 2:
            return
        lazy = self.filter.room.state.lazy_load_members
        members: dict[str, set[str]] | None = None
        if lazy:
            members = {t.window.room_id: {e.sender for e in t.events} | {self.user_id} for t in timelines}
        if self.request.use_state_after:
            positions = {t.window.room_id: t.window.upto for t in timelines}
        else:
            positions = {t.window.room_id: t.start for t in timelines}
        self.prefetched_state = await self.r.state_at_in_rooms(positions, members=members)
        room_ids = [t.window.room_id for t in timelines]
        counts = await self.r.member_counts_in_rooms(room_ids)
        names = await self.r.current_entries_in_rooms(room_ids, [("m.room.name", ""),
                                                                 ("m.room.canonical_alias", "")])
        wanted = {e.event_id for entries in self.prefetched_state.values() for e in entries}
        wanted |= {e.event_id for e in names}
        self.stored_events.update(await self.r.events_by_ids(wanted - self.stored_events.keys()))
        named = {e.room_id for e in names if e.event_id in self.stored_events
                 and _names_room(self.stored_events[e.event_id])}
        unnamed = [room_id for room_id in room_ids if room_id not in named]
        heroes = await self.r.heroes_in_rooms(unnamed, self.user_id, MAX_HEROES) if unnamed else {}
        await self._prefetch_aggregations(timelines)
        for room_id in room_ids:
            room_counts = counts.get(room_id, {})
            summary: dict[str, Any] = {
                "m.joined_member_count": room_counts.get("join", 0),
                "m.invited_member_count": room_counts.get("invite", 0),
            }
            if room_id in heroes:
                current, former = heroes[room_id]
                summary["m.heroes"] = current or former
            self.prefetched_summaries[room_id] = summary

    async def _prefetch_aggregations(self, timelines: list[_RoomTimeline]) -> None:
        """The bundled aggregations of every limited timeline among the rooms
        sent whole, read at once (spec: bundled when the timeline is limited;
        otherwise the client has seen the children itself)."""
        if self.filter.event_format == "federation":
            return
        limited = {t.window.room_id: t for t in timelines
                   if t.limited and t.events and t.window.room_id not in self.joined_throughout}
        if not limited:
            return

        def can_see(event: StoredEvent) -> bool:
            found = limited.get(event.room_id)
            return found is not None and found.vis.can_see(event)

        self.prefetched_aggregations = await bundle(
            self.r, self.requester, [e for t in limited.values() for e in t.events], can_see=can_see,
            ignored=self.ignored, include_room_id=False, now=self.now)
        self.aggregated_rooms = set(limited)

    async def _timeline(self, window: _RoomWindow, vis: RoomVisibility) -> _RoomTimeline:
        room_id = window.room_id
        timeline_filter = self.filter.room.timeline
        limit = self.filter.timeline_limit
        if not timeline_filter.allows_room(room_id):
            limit = 0
        fetched = self.prefetched.pop(room_id, None) if window.upto == self.upto else None
        if fetched is None:
            fetched = await self.r.recent_events(room_id, after=window.since or 0, upto=window.upto,
                                                 limit=limit + 1, event_filter=timeline_filter)
        limited = len(fetched) > limit
        visible = vis.filter(fetched)
        if self.ignored:
            # Ignored users' state events are still sent.
            visible = [e for e in visible if e.sender not in self.ignored or e.state_key is not None]
        timeline = visible[-limit:] if limit > 0 else []
        start = timeline[0].stream_pos - 1 if timeline else window.upto
        return _RoomTimeline(window, vis, timeline, limited, start)

    async def _room(self, room_timeline: _RoomTimeline) -> tuple[dict[str, Any], bool]:
        """The room's entry, and whether its timeline or state carries a membership event."""
        window, vis, timeline = room_timeline.window, room_timeline.vis, room_timeline.events
        limited, start = room_timeline.limited, room_timeline.start
        room_id = window.room_id
        if timeline:
            prev_batch = str(TopologyToken(timeline[0].depth, timeline[0].stream_pos))
        else:
            latest = await self.r.latest_position_in_room(room_id, window.upto)
            prev_batch = str(TopologyToken(latest[0], latest[1] + 1) if latest else TopologyToken(0, 0))
        state_key = "state"
        if self.request.use_state_after:
            # Matrix 1.16: the state up to the END of the timeline, in `state_after` only.
            state_key = "state_after"
            state = await self._state_after(room_id, window, timeline)
        else:
            state = await self._state(room_id, window, start, limited, timeline)
        aggregations: Aggregations = {}
        if room_id in self.aggregated_rooms:
            aggregations = self.prefetched_aggregations
        elif limited and timeline and self.filter.event_format != "federation":
            if room_id in self.joined_throughout:
                # The children may be older than the token: the whole history decides.
                vis = visibility_by_room(self.user_id, await self.r.membership_history(
                    self.user_id, [room_id])).get(room_id) or RoomVisibility(self.user_id, [])
            # Spec: bundled aggregations when the timeline is limited (otherwise
            # the client has seen the children itself).
            aggregations = await bundle(self.r, self.requester, timeline, can_see=vis.can_see,
                                        ignored=self.ignored, include_room_id=False, now=self.now)
        timeline_events = [self._client_event(e, aggregations) for e in timeline]
        self._remember_members(room_id, state, timeline_events)
        member_news = any(e.get("type") == MEMBER for e in timeline_events) or any(
            e.get("type") == MEMBER for e in state)
        state_out: list[Any] = state
        timeline_out: list[Any] = timeline_events
        if self.request.serialised_events:
            # Each event as its JSON text: the response holds a few objects
            # per event instead of its dicts, which no longer outlive the room
            # (an initial sync's thousands of them made the collector's
            # full passes over the heap frequent).
            state_out = [json_codec.serialised(e) for e in state]
            timeline_out = [json_codec.serialised(e) for e in timeline_events]
        return {
            state_key: {"events": state_out},
            "timeline": {
                "events": timeline_out,
                "limited": limited,
                "prev_batch": prev_batch,
            },
        }, member_news

    async def _state(self, room_id: str, window: _RoomWindow, start: int, limited: bool,
                     timeline: list[StoredEvent]) -> list[dict[str, Any]]:
        state_filter = self.filter.room.state
        senders = {e.sender for e in timeline}
        entries: list[StateEntry]
        if window.full_state:
            prefetched = self.prefetched_state.pop(room_id, None)
            if prefetched is not None:
                entries = prefetched
            elif state_filter.lazy_load_members:
                entries = await self.r.state_at(room_id, start, members=senders | {self.user_id})
            else:
                entries = await self.r.state_at(room_id, start)
        else:
            entries = (await self.r.state_at(room_id, start, added_after=window.since)) if limited else []
            if state_filter.lazy_load_members and senders:
                # The senders' memberships, so the client can show them (those
                # this device was sent already only with include_redundant_members).
                have = {(e.type, e.state_key) for e in entries}
                extra = await self.r.state_at(room_id, start, types=[(MEMBER, s) for s in sorted(senders)])
                entries += [e for e in extra if (e.type, e.state_key) not in have]
                entries = self._not_sent_before(room_id, entries)
            if not entries:
                return []
        return await self._format_state(entries, state_filter, exclude={e.event_id for e in timeline})

    async def _state_after(self, room_id: str, window: _RoomWindow,
                           timeline: list[StoredEvent]) -> list[dict[str, Any]]:
        state_filter = self.filter.room.state
        members: set[str] | None = None
        if state_filter.lazy_load_members:
            members = {e.sender for e in timeline} | {self.user_id}
        added_after = None if window.full_state else window.since
        prefetched = self.prefetched_state.pop(room_id, None) if window.full_state else None
        if prefetched is not None:
            entries = prefetched
        else:
            entries = await self.r.state_at(room_id, window.upto, added_after=added_after, members=members)
        if members is not None and added_after is not None:
            # Memberships that changed are sent whoever they concern.
            have = {(e.type, e.state_key) for e in entries}
            changed = await self.r.state_at(room_id, window.upto, added_after=added_after,
                                            types=[(MEMBER, None)])
            entries += [e for e in changed if (e.type, e.state_key) not in have]
            entries = self._not_sent_before(room_id, entries)
        return await self._format_state(entries, state_filter, exclude=set())

    def _not_sent_before(self, room_id: str, entries: list[StateEntry]) -> list[StateEntry]:
        """Leaves out the member events this device was already sent."""
        sent = self.sent_members
        if sent is None:
            return entries
        return [e for e in entries
                if not (e.type == MEMBER and sent.was_sent(room_id, e.state_key, e.event_id))]

    def _remember_members(self, room_id: str, *event_lists: list[dict[str, Any]]) -> None:
        sent = self.sent_members
        if sent is None:
            return
        for events in event_lists:
            for event in events:
                state_key, event_id = event.get("state_key"), event.get("event_id")
                if event.get("type") == MEMBER and isinstance(state_key, str) and isinstance(event_id, str):
                    sent.remember(room_id, state_key, event_id)

    async def _format_state(self, entries: list[StateEntry], state_filter: EventFilter,
                            exclude: set[str]) -> list[dict[str, Any]]:
        candidates = [e for e in entries if e.event_id not in exclude]
        stored = {e.event_id: self.stored_events[e.event_id] for e in candidates if e.event_id in self.stored_events}
        missing = [e.event_id for e in candidates if e.event_id not in stored]
        if missing:
            stored.update(await self.r.events_by_ids(missing))
        result = []
        for entry in sorted(candidates, key=lambda e: e.added_pos):
            event = stored.get(entry.event_id)
            if event is None or not state_filter.allows(event.type, event.sender, event.contains_url):
                continue
            result.append(self._client_event(event))
        return result

    def _client_event(self, event: StoredEvent, aggregations: Aggregations | None = None) -> dict[str, Any]:
        formatted: dict[str, Any]
        if self.filter.event_format == "federation":
            # The PDU as servers see it (event_format "federation").
            formatted = json.loads(event.event_json)
        else:
            formatted = to_client_event(event, self.requester, include_room_id=False, now=self.now)
            if aggregations:
                attach(formatted, aggregations)
        return apply_event_fields(formatted, self.filter.event_fields)

    async def _summary(self, room_id: str) -> dict[str, Any]:
        prefetched = self.prefetched_summaries.pop(room_id, None)
        if prefetched is not None:
            return prefetched
        counts = await self.r.member_counts(room_id)
        summary: dict[str, Any] = {
            "m.joined_member_count": counts.get("join", 0),
            "m.invited_member_count": counts.get("invite", 0),
        }
        if not await self._has_name(room_id):
            # Spec: joined or invited members; when there are none, those who left or were banned.
            heroes = await self.r.heroes(room_id, self.user_id, MAX_HEROES)
            if not heroes:
                heroes = await self.r.heroes(room_id, self.user_id, MAX_HEROES, ("leave", "ban"))
            summary["m.heroes"] = heroes
        return summary

    async def _has_name(self, room_id: str) -> bool:
        """Whether the room's m.room.name or m.room.canonical_alias is set and not empty."""
        entries = [await self.r.current_state_entry(room_id, "m.room.name", ""),
                   await self.r.current_state_entry(room_id, "m.room.canonical_alias", "")]
        found = await self.r.events_by_ids(e.event_id for e in entries if e is not None)
        return any(_names_room(stored) for stored in found.values())


def _names_room(stored: StoredEvent) -> bool:
    """Whether an m.room.name or m.room.canonical_alias event gives the room a name."""
    content = json.loads(stored.event_json).get("content")
    return isinstance(content, dict) and bool(content.get("name") or content.get("alias"))


class _AccountData:
    """The account data a response carries, latest content per type."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.global_data: dict[str, dict[str, Any]] = {}
        self.by_room: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)

    def add(self, changes: list[StoredAccountData]) -> None:
        for change in changes:
            try:
                content = json.loads(change.content_json)
            except ValueError:
                continue
            if not isinstance(content, dict):
                continue
            if change.room_id:
                self.by_room[change.room_id][change.type] = content
            elif change.type == PUSH_RULES:
                stored = content.get("global")
                self.global_data[change.type] = {"global": merge_with_defaults(
                    stored if isinstance(stored, dict) else None, self.user_id)}
            else:
                self.global_data[change.type] = content

    @property
    def rooms(self) -> set[str]:
        return set(self.by_room)

    def global_events(self, account_data_filter: EventFilter) -> list[dict[str, Any]]:
        return [{"type": t, "content": c} for t, c in self.global_data.items()
                if account_data_filter.allows(t, self.user_id)]

    def room_events(self, room_id: str, account_data_filter: EventFilter) -> list[dict[str, Any]]:
        if not account_data_filter.allows_room(room_id):
            return []
        return [{"type": t, "content": c} for t, c in self.by_room.get(room_id, {}).items()
                if account_data_filter.allows(t, self.user_id)]


class _Ephemeral:
    """What the rooms' ephemeral sections hold. (Read markers are account
    data: the receipts stream holds none.)"""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.typing: dict[str, list[str]] = {}
        # room ID -> event ID -> receipt type -> user ID -> receipt
        self.receipts: dict[str, dict[str, dict[str, dict[str, Any]]]] = defaultdict(dict)

    def add_receipts(self, receipts: list[StoredReceipt]) -> None:
        for receipt in receipts:
            if receipt.receipt_type == FULLY_READ:
                continue
            body: dict[str, Any] = {"ts": receipt.ts}
            if receipt.thread_id:
                body["thread_id"] = receipt.thread_id
            by_type = self.receipts[receipt.room_id].setdefault(receipt.event_id, {})
            by_type.setdefault(receipt.receipt_type, {})[receipt.user_id] = body

    def rooms(self) -> set[str]:
        return set(self.typing) | set(self.receipts)

    def events(self, room_id: str, ephemeral_filter: EventFilter) -> list[dict[str, Any]]:
        if not ephemeral_filter.allows_room(room_id):
            return []
        events: list[dict[str, Any]] = []
        if room_id in self.typing and ephemeral_filter.allows("m.typing", ""):
            events.append({"type": "m.typing", "content": {"user_ids": self.typing[room_id]}})
        if self.receipts.get(room_id) and ephemeral_filter.allows("m.receipt", ""):
            events.append({"type": "m.receipt", "content": self.receipts[room_id]})
        return events


def ignored_users_of(content: dict[str, Any]) -> set[str]:
    """The users an m.ignored_user_list content names (as Reader.ignored_users)."""
    ignored = content.get("ignored_users")
    return {u for u in ignored if isinstance(u, str)} if isinstance(ignored, dict) else set()


def presence_content(presence: StoredPresence, now: int) -> dict[str, Any]:
    """An m.presence event's content; last_active_ago is derived from when
    the user was last active."""
    ago = max(0, now - presence.last_active_ts)
    content: dict[str, Any] = {"presence": presence.presence, "last_active_ago": ago,
                               "currently_active": presence.presence == "online" and ago < CURRENTLY_ACTIVE_MS}
    if presence.status_msg is not None:
        content["status_msg"] = presence.status_msg
    return content


def _presence_event(presence: StoredPresence, now: int) -> dict[str, Any]:
    return {"type": "m.presence", "sender": presence.user_id, "content": presence_content(presence, now)}


def _response(token: StreamToken, join: dict[str, Any], invite: dict[str, Any], leave: dict[str, Any],
              *, presence: list[dict[str, Any]] | None = None, to_device: list[dict[str, Any]] | None = None,
              account_data: list[dict[str, Any]] | None = None,
              knock: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "next_batch": str(token),
        "rooms": {"join": join, "invite": invite, "leave": leave, "knock": knock or {}},
        "account_data": {"events": account_data or []},
        "presence": {"events": presence or []},
        "to_device": {"events": to_device or []},
        # device_lists and device_one_time_keys_count are left out until the
        # sync API serves them: an empty count would tell clients to upload keys.
    }
