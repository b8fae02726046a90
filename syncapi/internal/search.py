"""POST /search over room events (content/client-server-api/modules/search.md,
data/api/client-server/search.yaml).

The text index (``syncapi.storage.tables.search``) finds candidate events in
the rooms the user has been joined to; each candidate is then checked
against the user's membership and the history visibility at the event (the
same check /messages makes), so a user never finds an event they could not
page back to. Pages: ``order_by: rank`` continues at an offset into the
ranked matches, ``recent`` below a stream position; ``next_batch`` carries
which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common import errors
from syncapi.filters import EventFilter, parse_event_filter
from syncapi.internal.client_events import Requester, now_ms, to_client_event
from syncapi.internal.rooms import _paginate
from syncapi.internal.visibility import RoomVisibility, visibility_by_room
from syncapi.storage.database import Reader, SyncDatabase
from syncapi.storage.tables.current_state import MEMBER
from syncapi.storage.tables.events import StoredEvent
from syncapi.storage.tables.search import ALL_KEYS, search_words
from syncapi.tokens import TopologyToken

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 100
# Candidates read per round, and rounds per request: most candidates are
# visible, and a request must stay cheap when many are not.
BATCH = 50
MAX_ROUNDS = 10
GROUP_KEYS = ("room_id", "sender")


@dataclass(frozen=True)
class SearchRequest:
    term: str
    keys: tuple[str, ...]
    event_filter: EventFilter
    order_by_rank: bool
    context: dict[str, Any] | None
    include_state: bool
    group_by: tuple[str, ...]


def _dict(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errors.BadJSON(f"{name} must be an object")
    return value


def _context_limit(context: dict[str, Any], name: str) -> int:
    value = context.get(name, DEFAULT_CONTEXT)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise errors.BadJSON(f"event_context.{name} must be a non-negative integer")
    return min(value, MAX_CONTEXT)


def parse_search_request(body: dict[str, Any]) -> SearchRequest:
    categories = body.get("search_categories")
    if categories is None:
        raise errors.MissingParam("Missing parameter: search_categories")
    room_events = _dict(categories, "search_categories").get("room_events")
    if room_events is None:
        raise errors.MissingParam("Missing parameter: search_categories.room_events")
    room_events = _dict(room_events, "room_events")
    term = room_events.get("search_term")
    if term is None:
        raise errors.MissingParam("Missing parameter: search_term")
    if not isinstance(term, str):
        raise errors.BadJSON("search_term must be a string")
    keys = room_events.get("keys", list(ALL_KEYS))
    if not isinstance(keys, list) or not keys or any(k not in ALL_KEYS for k in keys):
        raise errors.BadJSON(f"keys must be a list of {', '.join(ALL_KEYS)}")
    raw_filter = room_events.get("filter")
    event_filter = parse_event_filter(_dict(raw_filter, "filter")) if raw_filter is not None else EventFilter()
    order_by = room_events.get("order_by", "rank")
    if order_by not in ("rank", "recent"):
        raise errors.BadJSON("order_by must be 'rank' or 'recent'")
    context = room_events.get("event_context")
    if context is not None:
        context = _dict(context, "event_context")
        context = {"before_limit": _context_limit(context, "before_limit"),
                   "after_limit": _context_limit(context, "after_limit"),
                   "include_profile": context.get("include_profile") is True}
    include_state = room_events.get("include_state", False) is True
    group_by: list[str] = []
    groupings = room_events.get("groupings")
    if groupings is not None:
        for group in _dict(groupings, "groupings").get("group_by", []) or []:
            key = _dict(group, "group_by entry").get("key")
            if key not in GROUP_KEYS:
                raise errors.BadJSON("group_by key must be 'room_id' or 'sender'")
            group_by.append(key)
    return SearchRequest(term=term, keys=tuple(keys), event_filter=event_filter,
                         order_by_rank=order_by == "rank", context=context, include_state=include_state,
                         group_by=tuple(group_by))


def _parse_batch(token: str | None, order_by_rank: bool) -> int | None:
    """The offset (rank) or stream position (recent) a next_batch continues at."""
    if not token:
        return None
    kind, _, number = token.partition("_")
    if kind != ("r" if order_by_rank else "s") or not number.isdigit():
        raise errors.InvalidParam("Invalid next_batch")
    return int(number)


class SearchHandler:
    def __init__(self, database: SyncDatabase) -> None:
        self._db = database

    async def search(self, requester: Requester, request: SearchRequest,
                     next_batch: str | None) -> dict[str, Any]:
        cursor = _parse_batch(next_batch, request.order_by_rank)
        limit = request.event_filter.limit or DEFAULT_LIMIT
        limit = max(1, min(limit, MAX_LIMIT))
        async with self._db.read() as reader:
            rooms = visibility_by_room(requester.user_id, await reader.membership_history(requester.user_id))
            room_ids = sorted(r for r, vis in rooms.items()
                              if vis.ever_joined and request.event_filter.allows_room(r))
            found: list[tuple[float, StoredEvent]] = []
            offset = (cursor or 0) if request.order_by_rank else 0
            before = None if request.order_by_rank else cursor
            exhausted = False
            for _ in range(MAX_ROUNDS):
                hits = await reader.search_events(
                    request.term, room_ids=room_ids, keys=request.keys, order_by_rank=request.order_by_rank,
                    limit=BATCH, offset=offset if request.order_by_rank else 0, before_pos=before)
                stored = await reader.events_at_positions([h.stream_pos for h in hits])
                for hit in hits:
                    offset += 1
                    before = hit.stream_pos
                    event = stored.get(hit.stream_pos)
                    if (event is not None and rooms[hit.room_id].can_see(event)
                            and request.event_filter.allows(event.type, event.sender, event.contains_url)):
                        found.append((hit.rank, event))
                        if len(found) == limit:
                            break
                if len(found) == limit:
                    break
                if len(hits) < BATCH:
                    exhausted = True
                    break
            count = await reader.search_count(request.term, room_ids=room_ids, keys=request.keys)
            now = now_ms()
            results = []
            for rank, event in found:
                entry: dict[str, Any] = {
                    "rank": rank, "result": to_client_event(event, requester, include_room_id=True, now=now)}
                if request.context is not None:
                    entry["context"] = await self._context(reader, requester, rooms[event.room_id], event,
                                                           request.context, now)
                results.append(entry)
            answer: dict[str, Any] = {"count": count, "highlights": sorted(set(search_words(request.term))),
                                      "results": results}
            # More may follow unless the index ran out (also when the rounds ran
            # out before the page filled: the client goes on from there).
            if not exhausted:
                answer["next_batch"] = f"r_{offset}" if request.order_by_rank else f"s_{before}"
            if request.group_by:
                answer["groups"] = _groups(found, request.group_by)
            if request.include_state:
                answer["state"] = await self._room_state(reader, requester, {e.room_id for _, e in found},
                                                         rooms, now)
        return {"search_categories": {"room_events": answer}}

    async def _context(self, reader: Reader, requester: Requester, vis: RoomVisibility, event: StoredEvent,
                       context: dict[str, Any], now: int) -> dict[str, Any]:
        at = TopologyToken(event.depth, event.stream_pos)
        before, start, _ = await _paginate(reader, event.room_id, vis, EventFilter(), start=at, bound=None,
                                           backwards=True, limit=context["before_limit"])
        after_start = TopologyToken(event.depth, event.stream_pos + 1)
        # Events after the user left are hidden by the visibility check.
        after, end, _ = await _paginate(reader, event.room_id, vis, EventFilter(), start=after_start,
                                        bound=None, backwards=False, limit=context["after_limit"])
        answer: dict[str, Any] = {
            "start": str(start if before else at), "end": str(end if after else after_start),
            "events_before": [to_client_event(e, requester, include_room_id=True, now=now) for e in before],
            "events_after": [to_client_event(e, requester, include_room_id=True, now=now) for e in after],
        }
        if context["include_profile"]:
            senders = sorted({e.sender for e in [event, *before, *after]})
            entries = await reader.state_at(event.room_id, event.stream_pos,
                                            types=[(MEMBER, s) for s in senders])
            stored = await reader.events_by_ids(e.event_id for e in entries)
            profiles: dict[str, Any] = {}
            for member in stored.values():
                content = to_client_event(member, None, include_room_id=False, now=now)["content"]
                profile = {k: content[k] for k in ("displayname", "avatar_url")
                           if isinstance(content, dict) and isinstance(content.get(k), str)}
                profiles[member.state_key or ""] = profile
            answer["profile_info"] = profiles
        return answer

    async def _room_state(self, reader: Reader, requester: Requester, room_ids: set[str],
                          rooms: dict[str, RoomVisibility], now: int) -> dict[str, Any]:
        """The state of each room with results: now, or when the user left."""
        position = await reader.current_position()
        state: dict[str, Any] = {}
        for room_id in sorted(room_ids):
            left_at = rooms[room_id].left_at
            entries = await reader.state_at(room_id, position if left_at is None else left_at)
            stored = await reader.events_by_ids(e.event_id for e in entries)
            state[room_id] = [to_client_event(e, requester, include_room_id=True, now=now)
                              for e in sorted(stored.values(), key=lambda e: e.stream_pos)]
        return state


def _groups(found: list[tuple[float, StoredEvent]], group_by: tuple[str, ...]) -> dict[str, Any]:
    groups: dict[str, Any] = {}
    for key in group_by:
        by_value: dict[str, dict[str, Any]] = {}
        for _, event in found:
            value = event.room_id if key == "room_id" else event.sender
            group = by_value.setdefault(value, {"results": [], "order": len(by_value) + 1})
            group["results"].append(event.event_id)
        groups[key] = by_value
    return groups
