"""Push rule evaluation for the events the sync API stores
(content/client-server-api/modules/push.md, "Receiving notifications",
"Push Rules").

For every new timeline event, each local joined member of the room other than
the sender (and a local user the event invites), unless they ignore the
sender, has their push rules
(``m.push_rules`` account data merged with the server defaults) evaluated
against it, with their display name in the room and the room's joined member
count. An event whose actions include ``notify`` becomes a stored
notification (its actions, whether they highlight, its thread); /sync counts
those past the user's read receipt and GET /notifications lists them.

The inputs are read once per batch of a room's events (members, display names,
rule sets, power levels: a handful of statements whatever the batch's size),
with the room's state after the batch.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common import errors
from matrixlib.events import Event
from matrixlib.power_levels import PowerLevels
from matrixlib.push_rules import (
    PushContext,
    actions_highlight,
    actions_notify,
    default_ruleset_template,
    evaluate,
    merge_with_defaults,
)
from matrixlib.room_versions import get_room_version
from syncapi.internal.client_events import Requester, now_ms, to_client_event
from syncapi.storage.database import Reader, SyncDatabase, relation_of
from syncapi.storage.tables import notifications as notifications_t
from syncapi.storage.tables.current_state import MEMBER
from syncapi.storage.tables.events import StoredEvent
from syncapi.storage.tables.notifications import StoredNotification

logger = logging.getLogger(__name__)

PUSH_RULES = "m.push_rules"
IGNORED_USERS = "m.ignored_user_list"
THREAD = "m.thread"
#: Users whose default rule set is kept built (see ``default_rules_of``).
DEFAULT_RULES_CACHE_SIZE = 10_000


def thread_of(event: Event) -> str:
    """The thread root's event ID of an event in a thread, "" otherwise."""
    relation = relation_of(event.content)
    if relation is not None and relation[1] == THREAD:
        return relation[0]
    return ""


def event_for_rules(event: Event) -> dict[str, Any]:
    """The fields of an event the push rule conditions look at (client format)."""
    found: dict[str, Any] = {"event_id": event.event_id, "type": event.type, "sender": event.sender,
                             "room_id": event.room_id, "content": event.content,
                             "origin_server_ts": event.origin_server_ts}
    if event.state_key is not None:
        found["state_key"] = event.state_key
    return found


def _parse(stored: StoredEvent) -> Event | None:
    try:
        return Event.from_json(stored.event_json, get_room_version(stored.room_version), stored.event_id)
    except Exception:
        return None


@functools.lru_cache(maxsize=DEFAULT_RULES_CACHE_SIZE)
def default_rules_of(user_id: str) -> dict[str, list[dict[str, Any]]]:
    """The rule set of a user who changed none of the defaults: built once
    per user, not once per member per event (a big room's every event is
    evaluated for each local member). Shared: callers only read it."""
    return merge_with_defaults(None, user_id)


@dataclass
class _RoomInputs:
    joined_count: int
    display_names: dict[str, str]
    # Only the users who stored rules of their own; the others have the
    # defaults (``default_rules_of``).
    rulesets: dict[str, dict[str, list[dict[str, Any]]]]
    # user ID -> the senders they ignore (their events never notify them).
    ignored: dict[str, set[str]]
    power_levels_content: Mapping[str, Any] | None
    power_levels: PowerLevels | None
    # The users whose account data (rules, ignored users) was read.
    read_users: set[str]


def member_changes(changes: Sequence[tuple[Event, Sequence[str], Sequence[str]]]) -> dict[str, str | None] | None:
    """When a run of (event, state event IDs it adds, IDs it removes)
    changed the room's state only by its own member events, each replacing
    at most the entry of its own state key: member event ID -> the event ID
    it replaced (None: a new member). What ``evaluate`` can then apply to
    the inputs it keeps instead of reading them again (``members_only``).
    None when other state changed."""
    replaced: dict[str, str | None] = {}
    for event, adds, removes in changes:
        if event.state_key is None:
            if adds or removes:
                return None
        elif event.type != MEMBER or list(adds) != [event.event_id] or len(removes) > 1:
            return None
        else:
            replaced[event.event_id] = removes[0] if removes else None
    return replaced


def _notifies_default_rules(event: Event) -> bool:
    """Whether the server-default rules can notify anyone of the event: a
    member event notifies only the user it invites (``.m.rule.invite_for_me``;
    ``.m.rule.member_event`` stops every other one with no actions), so for a
    join or leave only the users with rules of their own are evaluated, not a
    big room's every member."""
    return event.type != MEMBER or event.content.get("membership") == "invite"


#: Rooms whose push rule inputs are kept between batches.
ROOM_INPUTS_CACHE_SIZE = 1024
#: How many member events applied to a room's kept inputs are remembered.
APPLIED_MEMORY = 64
#: How many users' account data changes (``forget_user``) are remembered: a
#: room kept since before the oldest of them is read again whole.
USER_CHANGES_MEMORY = 4096


@dataclass
class _CachedRoom:
    # PushEvaluator's count of account data changes (``forget_user``) when
    # its inputs were read or last brought up to date: the users changed
    # after it are read again before it is used.
    changes_seen: int
    local_joined: set[str]
    inputs: _RoomInputs
    # The member events last applied (``_apply_members``): a batch written
    # again (its transaction failed after the rules ran) is not counted twice.
    applied: dict[str, None] = field(default_factory=dict)


class PushEvaluator:
    def __init__(self, database: SyncDatabase, server_name: str) -> None:
        self._db = database
        self._server_name = server_name
        self._local_suffix = ":" + server_name
        # room ID -> its inputs as of the last batch, while the room's state
        # and its members' account data stay as they were: a busy room's
        # messages then cost no reads at all.
        self._rooms: OrderedDict[str, _CachedRoom] = OrderedDict()
        # (change count, user ID) of the latest account data changes (see
        # ``forget_user``), the count rising; ``_changes`` counts them all.
        self._user_changes: deque[tuple[int, str]] = deque(maxlen=USER_CHANGES_MEMORY)
        self._changes = 0

    def forget_user(self, user_id: str) -> None:
        """The user's push rules or ignored users changed (told once the
        change is stored): the rooms' kept inputs read that user's again
        before their next use, and nobody else's. A read under way when this
        is called is not kept past it (its room's ``changes_seen`` is older)."""
        self._changes += 1
        self._user_changes.append((self._changes, user_id))

    def _users_changed_since(self, seen: int) -> set[str] | None:
        """The users whose account data changed after change count
        ``seen``; None when some of those changes are no longer remembered."""
        if seen == self._changes:
            return set()
        if not self._user_changes or self._user_changes[0][0] > seen + 1:
            return None
        changed: set[str] = set()
        for count, user_id in reversed(self._user_changes):
            if count <= seen:
                break
            changed.add(user_id)
        return changed

    def forget_room(self, room_id: str) -> None:
        """The room's state changed other than through ``evaluate``'s
        batches (a rebuild): its inputs are read again next time."""
        self._rooms.pop(room_id, None)

    async def on_room_events(self, room_id: str, new_events: Sequence[tuple[Event, int]]
                             ) -> list[StoredNotification]:
        """Evaluates the room's new live timeline events (each at its stream
        position) for its local members and stores the notifications;
        answers them (for delivery to pushers)."""
        if not new_events:
            return []
        self.forget_room(room_id)
        async with self._db.read() as reader:
            rows = await self.evaluate(reader, room_id, new_events, state_changed=True)
        await self._db.write_notifications(rows)
        return rows

    async def evaluate(self, reader: Reader, room_id: str, new_events: Sequence[tuple[Event, int]], *,
                       state_changed: bool, members_only: Mapping[str, str | None] | None = None
                       ) -> list[StoredNotification]:
        """The notifications of the room's new live events, read on
        ``reader`` (the room's state after them), not stored.
        ``state_changed``: the batch changed the room's state, so what was
        kept of the room is read again, unless ``members_only`` (see
        ``member_changes``): then the batch's member events are applied
        to what was kept, reading only what concerns their targets."""
        if not new_events:
            return []
        invited = {e.state_key for e, _ in new_events
                   if e.type == MEMBER and e.state_key is not None and e.state_key.endswith(self._local_suffix)
                   and e.content.get("membership") == "invite"}
        # Taken before anything is read: a change told after it is applied
        # to what this reads at the room's next use.
        changes_seen = self._changes
        cached = self._rooms.get(room_id) if not state_changed or members_only is not None else None
        changed_users: set[str] | None = set()
        if cached is not None:
            changed_users = self._users_changed_since(cached.changes_seen)
            if changed_users is None:
                self.forget_room(room_id)
                cached = None
            else:
                self._drop_users(cached, changed_users)
                cached.changes_seen = changes_seen
        if cached is not None and state_changed:
            assert members_only is not None
            try:
                applied = await self._apply_members(reader, cached, [e for e, _ in new_events], members_only)
            except BaseException:
                self.forget_room(room_id)  # half applied
                raise
            if not applied:
                self.forget_room(room_id)
                cached = None
        if cached is not None and changed_users:
            stale = sorted(u for u in changed_users if u in cached.local_joined and u not in cached.inputs.read_users)
            if stale:
                try:
                    await self._read_users(reader, cached.inputs, stale)
                except BaseException:
                    self.forget_room(room_id)  # read in part
                    raise
        if cached is not None:
            self._rooms.move_to_end(room_id)
            local_joined, inputs = cached.local_joined, cached.inputs
            if not local_joined and not invited:
                self.forget_room(room_id)
                return []
        else:
            local_members = await reader.local_joined_members(room_id, self._server_name)
            local_joined = set(local_members)
            if not local_joined and not invited:
                self.forget_room(room_id)
                return []
            joined_count = (await reader.member_counts(room_id)).get("join", 0)
            inputs = await self._inputs(reader, room_id, joined_count, sorted(local_joined | invited),
                                        list(local_members.values()))
            self._rooms[room_id] = _CachedRoom(changes_seen, local_joined, inputs)
            self._rooms.move_to_end(room_id)
            while len(self._rooms) > ROOM_INPUTS_CACHE_SIZE:
                self._rooms.popitem(last=False)
        rows: list[StoredNotification] = []
        for event, stream_pos in new_events:
            if _notifies_default_rules(event):
                recipients = set(local_joined)
            else:
                recipients = {user_id for user_id in inputs.rulesets if user_id in local_joined}
            if event.type == MEMBER and event.state_key in invited:
                recipients.add(event.state_key)
            as_json = event_for_rules(event)
            thread_id = thread_of(event)
            sender, event_id, ts = event.sender, event.event_id, event.origin_server_ts
            sender_power = inputs.power_levels.user_level(sender) if inputs.power_levels is not None else None
            # The default rules are evaluated once for the event; each
            # default-rule member then costs only the checks of the rules that
            # could name them (matrixlib.push_rules.RulesetTemplate).
            template = default_ruleset_template()
            prepared = template.prepare(as_json, room_member_count=inputs.joined_count,
                                        power_levels=inputs.power_levels_content,
                                        sender_power=sender_power) if template is not None else None
            # Shared outcomes (one object per rule) -> (actions JSON, highlight): encoded once.
            encoded: dict[str, tuple[str, bool]] = {}
            for user_id in sorted(recipients):
                if user_id == sender or sender in inputs.ignored.get(user_id, ()):
                    continue
                ruleset = inputs.rulesets.get(user_id)
                if ruleset is None and prepared is not None:
                    matched = (prepared.shared if prepared.names_nobody
                               else prepared.outcome_for(user_id, inputs.display_names.get(user_id, "")))
                    if matched is None or not actions_notify(matched[1]):
                        continue
                    known = encoded.get(matched[0])
                    if known is None:
                        known = encoded[matched[0]] = (json.dumps(matched[1], separators=(",", ":")),
                                                       actions_highlight(matched[1]))
                    actions_json, highlight = known
                else:
                    context = PushContext(
                        user_id=user_id, display_name=inputs.display_names.get(user_id, ""),
                        room_member_count=inputs.joined_count, power_levels=inputs.power_levels_content,
                        sender_power=sender_power)
                    matched = evaluate(ruleset if ruleset is not None else default_rules_of(user_id), as_json,
                                       context)
                    if matched is None or not actions_notify(matched[1]):
                        continue
                    actions_json = json.dumps(matched[1], separators=(",", ":"))
                    highlight = actions_highlight(matched[1])
                # The fields in order, without the named tuple's generated __new__
                # (0.13 against 0.5 us a row; a big room's message makes a row per member).
                rows.append(tuple.__new__(StoredNotification, (
                    user_id, stream_pos, room_id, event_id, thread_id, actions_json, highlight, ts)))
        return rows

    async def _apply_members(self, reader: Reader, cached: _CachedRoom, member_events: Sequence[Event],
                             replaced: Mapping[str, str | None]) -> bool:
        """Brings the kept inputs to the state after a batch whose only state
        changes are its member events (in order), each replacing the entry
        ``replaced`` names: the local targets' joins, display names and
        account data, and the joined count (moved by each event's membership
        and the one it replaced). Costs what the batch's targets cost, not
        what the room's members do. False (nothing changed) when the
        replaced entries are not what they should be: read it all again."""
        inputs = cached.inputs
        fresh = [e for e in member_events
                 if e.type == MEMBER and e.state_key is not None and e.event_id not in cached.applied]
        before_ids = [r for r in (replaced.get(e.event_id) for e in fresh) if r is not None]
        before = await reader.events_by_ids(before_ids) if before_ids else {}
        joined_count = inputs.joined_count
        for event in fresh:
            before_id = replaced.get(event.event_id)
            was_joined = False
            if before_id is not None:
                row = before.get(before_id)
                if row is None or row.type != MEMBER or row.state_key != event.state_key:
                    return False
                content = json.loads(row.event_json).get("content")
                was_joined = isinstance(content, dict) and content.get("membership") == "join"
            joined_count += (event.content.get("membership") == "join") - was_joined
        inputs.joined_count = joined_count
        for event in fresh:
            cached.applied[event.event_id] = None
        while len(cached.applied) > APPLIED_MEMORY:
            del cached.applied[next(iter(cached.applied))]
        for event in member_events:
            target = event.state_key
            if event.type != MEMBER or target is None or not target.endswith(self._local_suffix):
                continue
            if event.content.get("membership") == "join":
                cached.local_joined.add(target)
                name = event.content.get("displayname")
                if isinstance(name, str):
                    inputs.display_names[target] = name
                else:
                    inputs.display_names.pop(target, None)
            else:
                cached.local_joined.discard(target)
                inputs.display_names.pop(target, None)
        unread = sorted({e.state_key for e in member_events
                         if e.type == MEMBER and e.state_key is not None and e.state_key.endswith(self._local_suffix)
                         and e.content.get("membership") in ("join", "invite")} - inputs.read_users)
        if unread:
            await self._read_users(reader, inputs, unread)
        return True

    @staticmethod
    def _drop_users(cached: _CachedRoom, user_ids: set[str]) -> None:
        """Forgets what the kept inputs hold of the users' account data."""
        inputs = cached.inputs
        for user_id in user_ids:
            inputs.read_users.discard(user_id)
            inputs.rulesets.pop(user_id, None)
            inputs.ignored.pop(user_id, None)

    async def _read_users(self, reader: Reader, inputs: _RoomInputs, user_ids: list[str]) -> None:
        """Reads the users' account data into the kept inputs (replacing what they held of them)."""
        rulesets, ignored = await self._account_data(reader, user_ids, one_statement=len(user_ids) <= 500)
        for user_id in user_ids:
            inputs.rulesets.pop(user_id, None)
            inputs.ignored.pop(user_id, None)
        inputs.rulesets.update(rulesets)
        inputs.ignored.update(ignored)
        inputs.read_users.update(user_ids)

    async def _account_data(self, reader: Reader, user_ids: list[str], *, one_statement: bool = False
                            ) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[str, set[str]]]:
        """The users' own push rule sets (those who stored any) and the
        senders each ignores; ``one_statement``: both read together (a few
        users: a join's)."""
        rules_json: dict[str, str]
        ignored_json: dict[str, str]
        if one_statement:
            both = await notifications_t.select_global_account_data_of_types(
                reader.conn, user_ids, [PUSH_RULES, IGNORED_USERS])
            rules_json = {user_id: content for (user_id, kind), content in both.items() if kind == PUSH_RULES}
            ignored_json = {user_id: content for (user_id, kind), content in both.items() if kind == IGNORED_USERS}
        else:
            rules_json = await reader.global_account_data(user_ids, PUSH_RULES)
            ignored_json = await reader.global_account_data(user_ids, IGNORED_USERS)
        rulesets: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for user_id, content_json in rules_json.items():
            try:
                stored_rules = json.loads(content_json).get("global")
            except (ValueError, AttributeError):
                stored_rules = None
            rulesets[user_id] = merge_with_defaults(stored_rules if isinstance(stored_rules, dict) else None,
                                                    user_id)
        ignored: dict[str, set[str]] = {}
        for user_id, content_json in ignored_json.items():
            try:
                listed = json.loads(content_json).get("ignored_users")
            except (ValueError, AttributeError):
                listed = None
            if isinstance(listed, dict):
                ignored[user_id] = {u for u in listed if isinstance(u, str)}
        return rulesets, ignored

    async def _inputs(self, reader: Reader, room_id: str, joined_count: int, user_ids: list[str],
                      member_event_ids: list[str]) -> _RoomInputs:
        display_names: dict[str, str] = {}
        for stored in (await reader.events_by_ids(member_event_ids)).values():
            content = json.loads(stored.event_json).get("content")
            name = content.get("displayname") if isinstance(content, dict) else None
            if isinstance(name, str) and stored.state_key is not None:
                display_names[stored.state_key] = name
        rulesets, ignored = await self._account_data(reader, user_ids)
        power_entry = await reader.current_state_entry(room_id, "m.room.power_levels", "")
        create_entry = await reader.current_state_entry(room_id, "m.room.create", "")
        wanted = [e.event_id for e in (power_entry, create_entry) if e is not None]
        found = await reader.events_by_ids(wanted)
        power_event = _parse(found[power_entry.event_id]) if power_entry and power_entry.event_id in found else None
        create_event = (_parse(found[create_entry.event_id])
                        if create_entry and create_entry.event_id in found else None)
        levels: PowerLevels | None = None
        if create_event is not None:
            try:
                levels = PowerLevels.from_state(power_event, create_event.room_version, create_event=create_event)
            except Exception:
                logger.warning("power levels of %s unreadable for push rules", room_id, exc_info=True)
        return _RoomInputs(joined_count=joined_count, display_names=display_names, rulesets=rulesets,
                           ignored=ignored,
                           power_levels_content=power_event.content if power_event is not None else None,
                           power_levels=levels, read_users=set(user_ids))


@dataclass
class UnreadCounts:
    """A room's unread notification counts for a user: the main timeline's
    and each thread's (notifications, highlights)."""

    main: tuple[int, int] = (0, 0)
    threads: dict[str, tuple[int, int]] | None = None

    def as_sync(self, by_thread: bool) -> dict[str, Any]:
        """``unread_notifications`` (everything, or the main timeline when
        ``by_thread``) and, ``by_thread``, ``unread_thread_notifications``."""
        threads = self.threads or {}
        if by_thread:
            found: dict[str, Any] = {"unread_notifications": _counts(self.main)}
            if threads:
                found["unread_thread_notifications"] = {t: _counts(c) for t, c in sorted(threads.items())}
            return found
        total = (self.main[0] + sum(c[0] for c in threads.values()),
                 self.main[1] + sum(c[1] for c in threads.values()))
        return {"unread_notifications": _counts(total)}


def _counts(counts: tuple[int, int]) -> dict[str, int]:
    return {"notification_count": counts[0], "highlight_count": counts[1]}


async def unread_counts(reader: Reader, user_id: str, room_ids: Sequence[str], *,
                        known: tuple[set[str], list[tuple[str, str, int, int]]] | None = None
                        ) -> dict[str, UnreadCounts]:
    """The user's unread counts in the rooms (every room named has an
    entry): their notifications past the latest read receipt (public or
    private) for the notification's thread or an unthreaded one. ``known``:
    the count rows of some rooms read already (those rooms, their rows)."""
    found = {room_id: UnreadCounts((0, 0), {}) for room_id in room_ids}
    rows: list[tuple[str, str, int, int]] = []
    unknown = list(room_ids)
    if known is not None:
        unknown = [room_id for room_id in room_ids if room_id not in known[0]]
        rows = [row for row in known[1] if row[0] in found]
    if unknown:
        rows += await reader.unread_counts(user_id, unknown)
    for room_id, thread_id, notified, highlighted in rows:
        counts = found[room_id]
        if thread_id:
            assert counts.threads is not None
            counts.threads[thread_id] = (notified, highlighted)
        else:
            counts.main = (notified, highlighted)
    return found


DEFAULT_NOTIFICATIONS_LIMIT = 20
MAX_NOTIFICATIONS_LIMIT = 100


async def notifications_page(database: SyncDatabase, requester: Requester, *, from_token: str | None,
                             limit: int, only_highlight: bool) -> dict[str, Any]:
    """GET /notifications (notifications.yaml): the user's notifications,
    newest first; ``from`` is the stream position to continue below."""
    before: int | None = None
    if from_token is not None:
        if not from_token.isdigit():
            raise errors.InvalidParam("from is not a token this server gave")
        before = int(from_token)
    user_id = requester.user_id
    now = now_ms()
    async with database.read() as reader:
        rows = await reader.notifications_page(user_id, before=before, limit=limit, only_highlight=only_highlight)
        stored = await reader.events_by_ids([row.event_id for row in rows])
        read = await reader.read_up_to(user_id, sorted({row.room_id for row in rows}))
    notifications: list[dict[str, Any]] = []
    for row in rows:
        event = stored.get(row.event_id)
        if event is None:
            continue
        up_to = read.get(row.room_id)
        notifications.append({
            "actions": json.loads(row.actions_json), "room_id": row.room_id, "ts": row.ts,
            "read": up_to is not None and up_to.is_read(row),
            "event": to_client_event(event, requester, include_room_id=False, now=now)})
    body: dict[str, Any] = {"notifications": notifications}
    if len(rows) == limit and rows:
        body["next_token"] = str(rows[-1].stream_pos)
    return body
