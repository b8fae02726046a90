"""Client filters (``POST /user/{userId}/filter``, ``/sync?filter=``), parsed and checked.

The shapes are the spec's Filter, RoomFilter, RoomEventFilter and
StateFilter (data/api/client-server/definitions/*filter*.yaml). Each field is
parsed by one small function so more of them can be honoured later without
touching the rest. Pure code: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from common import errors

DEFAULT_TIMELINE_LIMIT = 10
MAX_TIMELINE_LIMIT = 1000


@dataclass(frozen=True)
class EventFilter:
    """The spec's RoomEventFilter (and, without the room fields, EventFilter)."""

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    # Per-thread notification counts in /sync (the timeline filter's flag).
    unread_thread_notifications: bool = False

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def allows(self, event_type: str, sender: str, contains_url: bool = False) -> bool:
        """Whether an event passes the type, sender and URL parts of the filter."""
        if any(type_matches(pattern, event_type) for pattern in self.not_types):
            return False
        if self.types is not None and not any(type_matches(p, event_type) for p in self.types):
            return False
        if sender in self.not_senders:
            return False
        if self.senders is not None and sender not in self.senders:
            return False
        return self.contains_url is None or self.contains_url == contains_url


@dataclass(frozen=True)
class RoomFilter:
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    timeline: EventFilter = field(default_factory=EventFilter)
    state: EventFilter = field(default_factory=EventFilter)
    ephemeral: EventFilter = field(default_factory=EventFilter)
    account_data: EventFilter = field(default_factory=EventFilter)

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


@dataclass(frozen=True)
class Filter:
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"
    presence: EventFilter = field(default_factory=EventFilter)
    account_data: EventFilter = field(default_factory=EventFilter)
    room: RoomFilter = field(default_factory=RoomFilter)

    @property
    def timeline_limit(self) -> int:
        limit = self.room.timeline.limit
        return DEFAULT_TIMELINE_LIMIT if limit is None else limit


@lru_cache(maxsize=1024)
def _type_regex(pattern: str) -> re.Pattern[str]:
    # Only '*' is a wildcard in the spec; every other character is literal.
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$", re.DOTALL)


def type_matches(pattern: str, event_type: str) -> bool:
    """An event type against a filter pattern, where ``*`` matches any run of characters."""
    if "*" not in pattern:
        return pattern == event_type
    return bool(_type_regex(pattern).match(event_type))


def like_pattern(pattern: str) -> str:
    """A filter pattern as an SQL LIKE pattern with ``\\`` as the escape character."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _field_path(field_path: str) -> list[str]:
    """A dot-separated event field path; ``\\.`` is a literal dot."""
    parts: list[str] = []
    current = ""
    escaped = False
    for char in field_path:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def apply_event_fields(event: Mapping[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    """Only the fields a filter's ``event_fields`` asks for (all when None)."""
    if fields is None:
        return dict(event)
    result: dict[str, Any] = {}
    for field_path in fields:
        path = _field_path(field_path)
        source: Any = event
        for key in path:
            if not isinstance(source, Mapping) or key not in source:
                break
            source = source[key]
        else:
            target = result
            for key in path[:-1]:
                target = target.setdefault(key, {})
            target[path[-1]] = source
    return result


# -- parsing -------------------------------------------------------------------


def parse_filter_json(text: str) -> Filter:
    """A filter given inline (``/sync?filter={...}``): M_NOT_JSON / M_BAD_JSON on bad input."""
    try:
        value = json.loads(text)
    except ValueError:
        raise errors.NotJSON("filter is not valid JSON") from None
    if not isinstance(value, dict):
        raise errors.BadJSON("filter must be a JSON object")
    return parse_filter(value)


def parse_filter(value: Mapping[str, Any]) -> Filter:
    """The spec's Filter object; M_BAD_JSON when a field has the wrong type."""
    _expect_object(value, "filter")
    event_format = value.get("event_format", "client")
    if event_format not in ("client", "federation"):
        raise errors.BadJSON("event_format must be 'client' or 'federation'")
    room = value.get("room", {})
    _expect_object(room, "room")
    return Filter(
        event_fields=_string_list(value, "event_fields"),
        event_format=event_format,
        presence=_event_filter(value.get("presence", {}), "presence"),
        account_data=_event_filter(value.get("account_data", {}), "account_data"),
        room=RoomFilter(
            rooms=_string_list(room, "rooms"),
            not_rooms=_string_list(room, "not_rooms") or (),
            include_leave=_bool(room, "include_leave", False),
            timeline=_event_filter(room.get("timeline", {}), "room.timeline"),
            state=_event_filter(room.get("state", {}), "room.state"),
            ephemeral=_event_filter(room.get("ephemeral", {}), "room.ephemeral"),
            account_data=_event_filter(room.get("account_data", {}), "room.account_data"),
        ),
    )


def parse_event_filter(value: Mapping[str, Any], where: str = "filter") -> EventFilter:
    """A RoomEventFilter on its own (``/messages?filter=``)."""
    return _event_filter(value, where)


def _event_filter(value: Any, where: str) -> EventFilter:
    _expect_object(value, where)
    limit = value.get("limit")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise errors.BadJSON(f"{where}.limit must be a non-negative integer")
        limit = min(limit, MAX_TIMELINE_LIMIT)
    contains_url = value.get("contains_url")
    if contains_url is not None and not isinstance(contains_url, bool):
        raise errors.BadJSON(f"{where}.contains_url must be a boolean")
    return EventFilter(
        limit=limit,
        types=_string_list(value, "types", where),
        not_types=_string_list(value, "not_types", where) or (),
        senders=_string_list(value, "senders", where),
        not_senders=_string_list(value, "not_senders", where) or (),
        rooms=_string_list(value, "rooms", where),
        not_rooms=_string_list(value, "not_rooms", where) or (),
        contains_url=contains_url,
        lazy_load_members=_bool(value, "lazy_load_members", False, where),
        include_redundant_members=_bool(value, "include_redundant_members", False, where),
        unread_thread_notifications=_bool(value, "unread_thread_notifications", False, where),
    )


def _expect_object(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise errors.BadJSON(f"{where} must be an object")


def _string_list(value: Mapping[str, Any], key: str, where: str = "filter") -> tuple[str, ...] | None:
    items = value.get(key)
    if items is None:
        return None
    if not isinstance(items, Sequence) or isinstance(items, str) or not all(
            isinstance(item, str) for item in items):
        raise errors.BadJSON(f"{where}.{key} must be a list of strings")
    return tuple(items)


def _bool(value: Mapping[str, Any], key: str, default: bool, where: str = "filter") -> bool:
    flag = value.get(key, default)
    if not isinstance(flag, bool):
        raise errors.BadJSON(f"{where}.{key} must be a boolean")
    return flag
