"""Relationships between events as clients read them (content/client-server-api,
"Forming relationships between events", "Threading", "Event replacements",
"Reference relations"): bundled aggregations, /relations, /threads, and the
single-event and timestamp lookups.

Bundled aggregations (``unsigned.m.relations``) hold, per parent event:

* ``m.thread``: ``latest_event`` (the topologically last reply, itself with
  its aggregations), ``count`` and ``current_user_participated``;
* ``m.replace``: the most recent valid replacement (same sender and type, no
  state key on either, the original not itself a replacement, the edit has
  ``m.new_content`` unless encrypted), by ``origin_server_ts`` then event ID;
  nothing for a redacted original;
* ``m.reference``: ``{"chunk": [{"event_id": ...}]}``.

Children from ignored users and children the user may not see are left out;
redacted children have no relation row any more. State events get none.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common import errors
from roomserver.api import StateQueryAPI
from syncapi.internal.client_events import Requester, now_ms, to_client_event
from syncapi.internal.visibility import MembershipSpan, RoomVisibility
from syncapi.storage.database import Reader, SyncDatabase, relation_of
from syncapi.storage.tables.events import StoredEvent
from syncapi.storage.tables.relations import StoredRelation
from syncapi.tokens import StreamToken, TopologyToken, parse_pagination_token

THREAD = "m.thread"
REPLACE = "m.replace"
REFERENCE = "m.reference"
BUNDLED = (THREAD, REPLACE, REFERENCE)
# Levels of indirect relations /relations follows with recurse=true (as Synapse).
MAX_RECURSION_DEPTH = 3
# Most descendants a recursive /relations looks at.
MAX_RECURSIVE_EVENTS = 10_000
DEFAULT_RELATIONS_LIMIT = 50
MAX_RELATIONS_LIMIT = 1000
DEFAULT_THREADS_LIMIT = 20
MAX_THREADS_LIMIT = 100
# Candidates /timestamp_to_event looks at for one the user may see.
TIMESTAMP_CANDIDATES = 50

Aggregations = dict[str, dict[str, Any]]


def _is_redacted(stored: StoredEvent) -> bool:
    return bool(stored.unsigned_json) and "redacted_because" in json.loads(stored.unsigned_json or "{}")


def _content(stored: StoredEvent) -> dict[str, Any]:
    content = json.loads(stored.event_json).get("content")
    return content if isinstance(content, dict) else {}


def _rel_type(stored: StoredEvent) -> str | None:
    found = relation_of(_content(stored))
    return found[1] if found else None


def _valid_replacement(original: StoredEvent, edit: StoredEvent) -> bool:
    if edit.room_id != original.room_id or edit.sender != original.sender or edit.type != original.type:
        return False
    if original.state_key is not None or edit.state_key is not None:
        return False
    if _rel_type(original) == REPLACE:
        return False
    # An encrypted edit's m.new_content is inside the ciphertext.
    return edit.type == "m.room.encrypted" or isinstance(_content(edit).get("m.new_content"), dict)


def attach(formatted: dict[str, Any], aggregations: Aggregations) -> dict[str, Any]:
    """Puts an event's bundled aggregations into its client form."""
    found = aggregations.get(str(formatted.get("event_id")))
    if found:
        unsigned = formatted.setdefault("unsigned", {})
        unsigned["m.relations"] = found
    return formatted


async def bundle(reader: Reader, requester: Requester, events: Sequence[StoredEvent], *,
                 can_see: Callable[[StoredEvent], bool], ignored: set[str] | None = None,
                 include_room_id: bool = True, now: int | None = None,
                 _nested: bool = False) -> Aggregations:
    """The bundled aggregations of ``events`` (parents) as ``requester`` may see them."""
    now = now_ms() if now is None else now
    if ignored is None:
        ignored = await reader.ignored_users(requester.user_id)
    parents = {e.event_id: e for e in events if e.state_key is None and not e.state_only}
    if not parents:
        return {}
    relations = await reader.relation_children(parents, rel_types=BUNDLED)
    if not relations:
        return {}
    children = await reader.events_by_ids(r.event_id for r in relations)
    visible: list[tuple[StoredRelation, StoredEvent]] = []
    for relation in relations:
        child = children.get(relation.event_id)
        if child is None or child.sender in ignored or not can_see(child):
            continue
        if child.room_id != parents[relation.relates_to].room_id:
            continue  # a relation only holds within one room
        visible.append((relation, child))

    result: Aggregations = {}
    threads: dict[str, list[StoredEvent]] = {}
    for relation, child in visible:
        parent = parents[relation.relates_to]
        if relation.rel_type == THREAD:
            threads.setdefault(parent.event_id, []).append(child)
        elif relation.rel_type == REPLACE:
            if _is_redacted(parent) or not _valid_replacement(parent, child):
                continue
            bundled = result.setdefault(parent.event_id, {})
            best = bundled.get("_replace")
            if best is None or (child.origin_server_ts or 0, child.event_id) > (
                    best.origin_server_ts or 0, best.event_id):
                bundled["_replace"] = child
        elif relation.rel_type == REFERENCE:
            result.setdefault(parent.event_id, {}).setdefault(REFERENCE, {"chunk": []})[
                "chunk"].append({"event_id": child.event_id})

    latest_events = {root: max(replies, key=lambda e: (e.depth, e.stream_pos))
                     for root, replies in threads.items()}
    nested: Aggregations = {}
    if latest_events and not _nested:
        nested = await bundle(reader, requester, list(latest_events.values()), can_see=can_see,
                              ignored=ignored, include_room_id=include_room_id, now=now, _nested=True)
    for root, replies in threads.items():
        latest = to_client_event(latest_events[root], requester, include_room_id=include_room_id, now=now)
        participated = (parents[root].sender == requester.user_id
                        or any(r.sender == requester.user_id for r in replies))
        result.setdefault(root, {})[THREAD] = {
            "latest_event": attach(latest, nested), "count": len(replies),
            "current_user_participated": participated,
        }
    for bundled in result.values():
        edit = bundled.pop("_replace", None)
        if isinstance(edit, StoredEvent):
            bundled[REPLACE] = to_client_event(edit, requester, include_room_id=include_room_id, now=now)
    return {event_id: bundled for event_id, bundled in result.items() if bundled}


async def _room_visibility(reader: Reader, user_id: str, room_id: str) -> RoomVisibility:
    rows = await reader.membership_history(user_id, [room_id])
    return RoomVisibility(user_id, [MembershipSpan(m, a, r) for _, m, a, r in rows])


def _may_see(vis: RoomVisibility, stored: StoredEvent) -> bool:
    """As /context: visible, and the user has been in the room unless it was world-readable."""
    if not vis.can_see(stored):
        return False
    return vis.ever_joined or stored.history_visibility == "world_readable"


async def _resolve(reader: Reader, room_id: str, text: str) -> TopologyToken:
    token = parse_pagination_token(text)
    if isinstance(token, TopologyToken):
        return token
    assert isinstance(token, StreamToken)
    latest = await reader.latest_position_in_room(room_id, token.pdu)
    return TopologyToken(0, 0) if latest is None else TopologyToken(latest[0], latest[1] + 1)


#: How long GET /event waits for an event the room server has accepted but
#: this read model has not applied yet, and how often it looks again.
CATCH_UP_SECONDS = 5.0
CATCH_UP_POLL_SECONDS = 0.01


class RelationReads:
    """``roomserver``: asked when GET /event misses, so that an event whose
    send was answered a moment ago is served once this read model has it
    (Synapse answers it at once: it persists before the send returns)."""

    def __init__(self, database: SyncDatabase, roomserver: StateQueryAPI | None = None) -> None:
        self._db = database
        self._roomserver = roomserver

    async def event(self, requester: Requester, room_id: str, event_id: str) -> dict[str, Any]:
        """GET /rooms/{roomId}/event/{eventId}: 404 unless the user may see it."""
        answer = await self._event_if_stored(requester, room_id, event_id)
        if answer is None and await self._accepted_by_roomserver(room_id, event_id):
            # The sync API follows the output log: the event is on its way.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CATCH_UP_SECONDS
            while answer is None and loop.time() < deadline:
                await asyncio.sleep(CATCH_UP_POLL_SECONDS)
                answer = await self._event_if_stored(requester, room_id, event_id)
        if answer is None:
            raise errors.NotFound("Event not found")
        return answer

    async def _event_if_stored(self, requester: Requester, room_id: str,
                               event_id: str) -> dict[str, Any] | None:
        """The event as the client gets it; None when this read model does
        not have it yet; NotFound when it has it and the user may not see it."""
        async with self._db.read() as reader:
            stored = (await reader.events_by_ids([event_id])).get(event_id)
            if stored is None:
                return None
            vis = await _room_visibility(reader, requester.user_id, room_id)
            if stored.room_id != room_id or not _may_see(vis, stored):
                raise errors.NotFound("Event not found")
            now = now_ms()
            aggregations = await bundle(reader, requester, [stored], can_see=vis.can_see, now=now)
            return attach(to_client_event(stored, requester, include_room_id=True, now=now), aggregations)

    async def _accepted_by_roomserver(self, room_id: str, event_id: str) -> bool:
        """Whether the room server holds ``event_id`` as an accepted event of
        ``room_id`` (outliers, rejected and soft-failed events never reach
        this read model: no wait for them)."""
        if self._roomserver is None:
            return False
        answer = await self._roomserver.query_events_by_id(rs_pb.QueryEventsByIDRequest(event_ids=[event_id]))
        return any(e.event_id == event_id and json.loads(e.pdu_json).get("room_id") == room_id
                   for e in answer.events)

    async def relations(self, requester: Requester, room_id: str, event_id: str, *,
                        rel_type: str | None, event_type: str | None, from_token: str | None,
                        to_token: str | None, backwards: bool, limit: int,
                        recurse: bool) -> dict[str, Any]:
        """GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] (relations.yaml)."""
        limit = max(1, min(limit, MAX_RELATIONS_LIMIT))
        async with self._db.read() as reader:
            vis = await _room_visibility(reader, requester.user_id, room_id)
            parent = (await reader.events_by_ids([event_id])).get(event_id)
            if parent is None or parent.room_id != room_id or not _may_see(vis, parent):
                raise errors.NotFound("Event not found")
            descendants: list[str] | None = None
            if recurse:
                descendants = []
                level = [event_id]
                seen = {event_id}
                for _ in range(MAX_RECURSION_DEPTH):
                    level = [c for c in await reader.relation_child_ids(level) if c not in seen]
                    if not level:
                        break
                    seen.update(level)
                    descendants.extend(level)
                    if len(descendants) >= MAX_RECURSIVE_EVENTS:
                        break
            start = await _resolve(reader, room_id, from_token) if from_token else None
            bound = await _resolve(reader, room_id, to_token) if to_token else None
            ignored = await reader.ignored_users(requester.user_id)
            chunk: list[StoredEvent] = []
            cursor = start
            more = True
            while more and len(chunk) < limit:
                want = limit - len(chunk)
                if backwards:
                    page = await reader.relations_page(
                        room_id=room_id, parent_ids=[event_id], rel_type=rel_type, event_type=event_type,
                        before=(cursor.depth, cursor.stream) if cursor else None,
                        at_or_after=(bound.depth, bound.stream) if bound else None,
                        backwards=True, limit=want + 1, event_ids=descendants)
                else:
                    page = await reader.relations_page(
                        room_id=room_id, parent_ids=[event_id], rel_type=rel_type, event_type=event_type,
                        at_or_after=(cursor.depth, cursor.stream) if cursor else None,
                        before=(bound.depth, bound.stream) if bound else None,
                        backwards=False, limit=want + 1, event_ids=descendants)
                more = len(page) > want
                found = await reader.events_by_ids(r.event_id for r in page[:want])
                for relation in page[:want]:
                    stored = found.get(relation.event_id)
                    if stored is not None and stored.sender not in ignored and vis.can_see(stored):
                        chunk.append(stored)
                    cursor = (TopologyToken(relation.depth, relation.stream_pos) if backwards
                              else TopologyToken(relation.depth, relation.stream_pos + 1))
            now = now_ms()
            aggregations = await bundle(reader, requester, chunk, can_see=vis.can_see, ignored=ignored,
                                        now=now)
            response: dict[str, Any] = {
                "chunk": [attach(to_client_event(e, requester, include_room_id=True, now=now), aggregations)
                          for e in chunk],
            }
            if more and cursor is not None:
                response["next_batch"] = str(cursor)
            if from_token:
                response["prev_batch"] = from_token
            if recurse:
                response["recursion_depth"] = MAX_RECURSION_DEPTH
            return response

    async def threads(self, requester: Requester, room_id: str, *, participated: bool,
                      from_token: str | None, limit: int) -> dict[str, Any]:
        """GET /rooms/{roomId}/threads (threads_list.yaml): roots by latest reply, newest first."""
        limit = max(1, min(limit, MAX_THREADS_LIMIT))
        before_pos: int | None = None
        if from_token:
            if not from_token.startswith("r") or not from_token[1:].isdigit():
                raise errors.InvalidParam("Unknown pagination token")
            before_pos = int(from_token[1:])
        async with self._db.read() as reader:
            vis = await _room_visibility(reader, requester.user_id, room_id)
            if not vis.ever_joined and await reader.latest_history_visibility(room_id) != "world_readable":
                raise errors.Forbidden("You are not allowed to view this room.")
            ignored = await reader.ignored_users(requester.user_id)
            roots: list[StoredEvent] = []
            more = True
            while more and len(roots) < limit:
                want = limit - len(roots)
                found = await reader.threads(room_id, before_pos=before_pos, limit=want + 1,
                                             participant=requester.user_id if participated else None)
                more = len(found) > want
                stored = await reader.events_by_ids(root for root, _ in found[:want])
                for root_id, latest_pos in found[:want]:
                    root = stored.get(root_id)
                    if root is not None and root.room_id == room_id and vis.can_see(root):
                        roots.append(root)
                    before_pos = latest_pos
            now = now_ms()
            aggregations = await bundle(reader, requester, roots, can_see=vis.can_see, ignored=ignored,
                                        now=now)
            chunk = []
            for root in roots:
                formatted = to_client_event(root, requester, include_room_id=True, now=now)
                if root.sender in ignored:
                    # Spec: an ignored user's root is returned redacted.
                    formatted["content"] = {}
                chunk.append(attach(formatted, aggregations))
            response: dict[str, Any] = {"chunk": chunk}
            if more and before_pos is not None:
                response["next_batch"] = f"r{before_pos}"
            return response

    async def timestamp_to_event(self, requester: Requester, room_id: str, ts: int, *,
                                 backwards: bool) -> dict[str, Any]:
        """GET /rooms/{roomId}/timestamp_to_event (room_event_by_timestamp.yaml): the
        visible event closest to ``ts`` in the direction asked."""
        async with self._db.read() as reader:
            vis = await _room_visibility(reader, requester.user_id, room_id)
            for stored in await reader.events_by_timestamp(room_id, ts, backwards=backwards,
                                                           limit=TIMESTAMP_CANDIDATES):
                if _may_see(vis, stored):
                    return {"event_id": stored.event_id, "origin_server_ts": stored.origin_server_ts}
        raise errors.NotFound(f"Unable to find event from {ts} in direction {'b' if backwards else 'f'}")
