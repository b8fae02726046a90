"""Per-room reads: /messages, /members, /joined_members
(data/api/client-server/message_pagination.yaml, members.yaml).

/messages pages through a room in topological order (depth, then stream
position) with ``TopologyToken``s that sit between events, so a client that
pages backwards from /sync's ``prev_batch`` gets every event exactly once,
back to the room's creation, after which ``end`` is left out.

When a backwards page reaches the start of what this server has and the
room's history goes further (the earliest event is not the create event),
the federation API (when given) backfills older events from other servers
in the room; once the sync API has them, the page is served again and so
takes them in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from myelin.federationapi.v1 import federationapi_pb2 as fed_pb
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common import errors
from federationapi.api import FederationInternalAPI
from roomserver.api import MembershipQueryAPI
from syncapi.filters import EventFilter
from syncapi.internal.client_events import Requester, now_ms, to_client_event
from syncapi.internal.relations import attach, bundle
from syncapi.internal.visibility import MembershipSpan, RoomVisibility
from syncapi.storage.database import Reader, SyncDatabase
from syncapi.storage.tables.current_state import MEMBER
from syncapi.storage.tables.events import StoredEvent
from syncapi.tokens import StreamToken, TopologyToken, parse_pagination_token

logger = logging.getLogger(__name__)

MAX_MESSAGES_LIMIT = 1000
# Backfill asks for at least this many events.
MIN_BACKFILL_LIMIT = 50
# How long a page waits for backfilled events to reach this component's
# read model (the room server's output log is followed asynchronously).
BACKFILL_ARRIVAL_SECONDS = 5.0
BACKFILL_ARRIVAL_POLL_SECONDS = 0.05
# How long a read refused by this read model waits for a membership the
# room server already has to arrive here.
JOIN_ARRIVAL_SECONDS = 3.0
# A room whose backfill brought nothing is not tried again for this long.
BACKFILL_RETRY_SECONDS = 30.0


async def _room_visibility(reader: Reader, user_id: str, room_id: str) -> RoomVisibility:
    rows = await reader.membership_history(user_id, [room_id])
    return RoomVisibility(user_id, [MembershipSpan(m, a, r) for _, m, a, r in rows])


async def _gap_after_event(reader: Reader, event_id: str) -> TopologyToken | None:
    found = await reader.events_by_ids([event_id])
    stored = found.get(event_id)
    return None if stored is None else TopologyToken(stored.depth, stored.stream_pos + 1)


async def _resolve(reader: Reader, room_id: str, text: str) -> TopologyToken:
    """A pagination token as a point in the room's topological order; a
    /sync stream token means "after the room's last event at that position"."""
    token = parse_pagination_token(text)
    if isinstance(token, TopologyToken):
        return token
    latest = await reader.latest_position_in_room(room_id, token.pdu)
    return TopologyToken(0, 0) if latest is None else TopologyToken(latest[0], latest[1] + 1)


async def _paginate(reader: Reader, room_id: str, vis: RoomVisibility, event_filter: EventFilter, *,
                    start: TopologyToken, bound: TopologyToken | None, backwards: bool, limit: int
                    ) -> tuple[list[StoredEvent], TopologyToken, bool]:
    """Up to ``limit`` visible events from ``start`` in one direction, not
    crossing ``bound``: the events, the token after the last one looked at,
    and whether more events lie beyond it."""
    chunk: list[StoredEvent] = []
    cursor = start
    more = True
    while more and len(chunk) < limit:
        want = limit - len(chunk)
        if backwards:
            page = await reader.topological_page(
                room_id, before=(cursor.depth, cursor.stream),
                at_or_after=(bound.depth, bound.stream) if bound else None,
                backwards=True, limit=want + 1, event_filter=event_filter)
        else:
            page = await reader.topological_page(
                room_id, at_or_after=(cursor.depth, cursor.stream),
                before=(bound.depth, bound.stream) if bound else None,
                backwards=False, limit=want + 1, event_filter=event_filter)
        more = len(page) > want
        for stored in page[:want]:
            if vis.can_see(stored):
                chunk.append(stored)
            # Backwards, the token sits before the event; forwards, after it.
            cursor = (TopologyToken(stored.depth, stored.stream_pos) if backwards
                      else TopologyToken(stored.depth, stored.stream_pos + 1))
    return chunk, cursor, more


async def _state_for(reader: Reader, requester: Requester, room_id: str, events: list[StoredEvent],
                     event_filter: EventFilter, *, lazy_only: bool, now: int) -> list[dict[str, Any]]:
    """The room's state at the last of ``events``; with ``lazy_only`` only
    the membership of their senders (lazy-loading members)."""
    position = max(e.stream_pos for e in events)
    if lazy_only:
        senders = sorted({e.sender for e in events})
        entries = await reader.state_at(room_id, position, types=[(MEMBER, s) for s in senders])
    else:
        entries = await reader.state_at(room_id, position)
    stored = await reader.events_by_ids(e.event_id for e in entries)
    return [to_client_event(e, requester, include_room_id=True, now=now)
            for e in sorted(stored.values(), key=lambda e: e.stream_pos)
            if lazy_only or event_filter.allows(e.type, e.sender, e.contains_url)]


@dataclass
class _Page:
    response: dict[str, Any]
    # The token after the last event looked at.
    cursor: TopologyToken
    # The room's earliest event here, when the page reached it going
    # backwards and history goes further (a backfill is due).
    earliest: StoredEvent | None


class RoomReads:
    def __init__(self, database: SyncDatabase, federation: FederationInternalAPI | None = None,
                 roomserver: MembershipQueryAPI | None = None) -> None:
        self._db = database
        # Set by the deployment once the federation API exists (backfill).
        self.federation = federation
        # Asked when this read model refuses a user the room server may
        # already have in the room (a join still on its way here).
        self.roomserver = roomserver
        # room ID -> when (monotonic) a backfill of it last brought nothing
        self._fruitless_backfill: dict[str, float] = {}

    async def _caught_up_with_join(self, user_id: str, room_id: str) -> bool:
        """After a refusal: True once this read model has the user's
        membership that the room server already has (a client that joins
        and reads at once must not get a 403 from a read model a few
        milliseconds behind). False when the room server has no such
        membership or the read model does not catch up in time."""
        if self.roomserver is None:
            return False
        try:
            membership = await self.roomserver.query_membership_for_user(
                rs_pb.QueryMembershipForUserRequest(room_id=room_id, user_id=user_id))
        except Exception:
            logger.warning("membership of %s in %s not asked", user_id, room_id, exc_info=True)
            return False
        if not membership.has_been_in_room or membership.membership not in ("join", "leave", "ban"):
            return False
        deadline = time.monotonic() + JOIN_ARRIVAL_SECONDS
        while time.monotonic() < deadline:
            async with self._db.read() as reader:
                if (await _room_visibility(reader, user_id, room_id)).ever_joined:
                    return True
            await asyncio.sleep(BACKFILL_ARRIVAL_POLL_SECONDS)
        return False

    async def messages(self, requester: Requester, room_id: str, *, from_token: str | None,
                       to_token: str | None, backwards: bool, limit: int,
                       event_filter: EventFilter) -> dict[str, Any]:
        try:
            page = await self._messages(requester, room_id, from_token=from_token, to_token=to_token,
                                        backwards=backwards, limit=limit, event_filter=event_filter)
        except errors.Forbidden:
            if not await self._caught_up_with_join(requester.user_id, room_id):
                raise
            page = await self._messages(requester, room_id, from_token=from_token, to_token=to_token,
                                        backwards=backwards, limit=limit, event_filter=event_filter)
        if page.earliest is not None and await self._backfill(room_id, page.earliest, limit):
            page = await self._messages(requester, room_id, from_token=from_token, to_token=to_token,
                                        backwards=backwards, limit=limit, event_filter=event_filter)
            if page.earliest is not None and "end" not in page.response:
                # History goes further still: the client's next page backfills again.
                page.response["end"] = str(page.cursor)
        return page.response

    async def _backfill(self, room_id: str, earliest: StoredEvent, limit: int) -> bool:
        """Backfills before ``earliest``; True once events arrived here."""
        if self.federation is None:
            return False
        tried = self._fruitless_backfill.get(room_id)
        if tried is not None and time.monotonic() - tried < BACKFILL_RETRY_SECONDS:
            return False
        try:
            answer = await self.federation.perform_backfill(fed_pb.PerformBackfillRequest(
                room_id=room_id, from_event_ids=[earliest.event_id], limit=max(limit, MIN_BACKFILL_LIMIT)))
        except errors.MatrixError as exc:
            logger.info("backfill of %s failed: %s", room_id, exc)
            answer = fed_pb.PerformBackfillResponse(added=0)
        except Exception:
            # The page is served from what is here whatever went wrong.
            logger.warning("backfill of %s failed", room_id, exc_info=True)
            answer = fed_pb.PerformBackfillResponse(added=0)
        if answer.added <= 0:
            self._fruitless_backfill[room_id] = time.monotonic()
            return False
        self._fruitless_backfill.pop(room_id, None)
        # The room server has them; wait (bounded) for the output log to
        # bring them here. Nothing signals historical events, so look.
        deadline = time.monotonic() + BACKFILL_ARRIVAL_SECONDS
        while True:
            async with self._db.read() as reader:
                arrived = await reader.topological_page(
                    room_id, before=(earliest.depth, earliest.stream_pos), at_or_after=None, backwards=True,
                    limit=answer.added, event_filter=None)
            if len(arrived) >= answer.added or time.monotonic() > deadline:
                return bool(arrived)
            await asyncio.sleep(BACKFILL_ARRIVAL_POLL_SECONDS)

    async def _messages(self, requester: Requester, room_id: str, *, from_token: str | None,
                        to_token: str | None, backwards: bool, limit: int,
                        event_filter: EventFilter) -> _Page:
        limit = max(0, min(limit, MAX_MESSAGES_LIMIT))
        async with self._db.read() as reader:
            vis = await _room_visibility(reader, requester.user_id, room_id)
            if not vis.ever_joined and await reader.latest_history_visibility(room_id) != "world_readable":
                raise errors.Forbidden("You are not allowed to read this room's history")
            start = await _resolve(reader, room_id, from_token) if from_token else None
            end_bound = await _resolve(reader, room_id, to_token) if to_token else None
            # A user who left pages no further than their leave.
            leave_gap: TopologyToken | None = None
            if vis.left_at is not None:
                entry = await reader.current_state_entry(room_id, MEMBER, requester.user_id)
                if entry is not None:
                    leave_gap = await _gap_after_event(reader, entry.event_id)
            if start is None:
                if backwards:
                    upto = await reader.current_position()
                    latest = await reader.latest_position_in_room(room_id, upto)
                    start = TopologyToken(0, 0) if latest is None else TopologyToken(latest[0], latest[1] + 1)
                else:
                    start = TopologyToken(0, 0)
            if leave_gap is not None:
                if backwards and start > leave_gap:
                    start = leave_gap
                if not backwards and (end_bound is None or end_bound > leave_gap):
                    end_bound = leave_gap

            chunk, cursor, more = await _paginate(reader, room_id, vis, event_filter, start=start,
                                                  bound=end_bound, backwards=backwards, limit=limit)

            now = now_ms()
            aggregations = await bundle(reader, requester, chunk, can_see=vis.can_see, now=now)
            response: dict[str, Any] = {
                "start": from_token or str(start),
                "chunk": [attach(to_client_event(e, requester, include_room_id=True, now=now), aggregations)
                          for e in chunk],
            }
            if more:
                response["end"] = str(cursor)
            response["state"] = []
            if event_filter.lazy_load_members and chunk:
                response["state"] = await _state_for(reader, requester, room_id, chunk, event_filter,
                                                     lazy_only=True, now=now)
            earliest: StoredEvent | None = None
            if backwards and not more and end_bound is None and self.federation is not None:
                first = await reader.topological_page(room_id, before=None, at_or_after=None, backwards=False,
                                                      limit=1, event_filter=None)
                if first and first[0].type != "m.room.create":
                    earliest = first[0]
            return _Page(response, cursor, earliest)

    async def context(self, requester: Requester, room_id: str, event_id: str, *, limit: int,
                      event_filter: EventFilter) -> dict[str, Any]:
        """GET /rooms/{roomId}/context/{eventId} (event_context.yaml)."""
        try:
            return await self._context(requester, room_id, event_id, limit=limit, event_filter=event_filter)
        except (errors.Forbidden, errors.NotFound):
            if not await self._caught_up_with_join(requester.user_id, room_id):
                raise
            return await self._context(requester, room_id, event_id, limit=limit, event_filter=event_filter)

    async def _context(self, requester: Requester, room_id: str, event_id: str, *, limit: int,
                       event_filter: EventFilter) -> dict[str, Any]:
        limit = max(0, min(limit, MAX_MESSAGES_LIMIT))
        async with self._db.read() as reader:
            vis = await _room_visibility(reader, requester.user_id, room_id)
            target = (await reader.events_by_ids([event_id])).get(event_id)
            if target is None or target.room_id != room_id or target.state_only or not vis.can_see(target):
                raise errors.NotFound("Event not found")
            if not vis.ever_joined and target.history_visibility != "world_readable":
                raise errors.NotFound("Event not found")
            at = TopologyToken(target.depth, target.stream_pos)
            before_limit = limit // 2
            before, start, _ = await _paginate(reader, room_id, vis, event_filter, start=at, bound=None,
                                               backwards=True, limit=before_limit)
            after_start = TopologyToken(target.depth, target.stream_pos + 1)
            bound: TopologyToken | None = None
            if vis.left_at is not None:
                entry = await reader.current_state_entry(room_id, MEMBER, requester.user_id)
                bound = await _gap_after_event(reader, entry.event_id) if entry is not None else None
            after, end, _ = await _paginate(reader, room_id, vis, event_filter, start=after_start,
                                            bound=bound, backwards=False, limit=limit - before_limit)
            now = now_ms()
            state = await _state_for(reader, requester, room_id, [target, *after], event_filter,
                                     lazy_only=event_filter.lazy_load_members, now=now)
            aggregations = await bundle(reader, requester, [target, *before, *after], can_see=vis.can_see,
                                        now=now)
            return {
                "start": str(start if before else at),
                "end": str(end if after else after_start),
                "event": attach(to_client_event(target, requester, include_room_id=True, now=now),
                                aggregations),
                "events_before": [attach(to_client_event(e, requester, include_room_id=True, now=now),
                                         aggregations) for e in before],
                "events_after": [attach(to_client_event(e, requester, include_room_id=True, now=now),
                                        aggregations) for e in after],
                "state": state,
            }

    async def members(self, requester: Requester, room_id: str, *, at: str | None,
                      membership: str | None, not_membership: str | None) -> dict[str, Any]:
        try:
            return await self._members(requester, room_id, at=at, membership=membership,
                                       not_membership=not_membership)
        except errors.Forbidden:
            if not await self._caught_up_with_join(requester.user_id, room_id):
                raise
            return await self._members(requester, room_id, at=at, membership=membership,
                                       not_membership=not_membership)

    async def _members(self, requester: Requester, room_id: str, *, at: str | None,
                       membership: str | None, not_membership: str | None) -> dict[str, Any]:
        async with self._db.read() as reader:
            vis = await _room_visibility(reader, requester.user_id, room_id)
            if not vis.ever_joined:
                raise errors.Forbidden("You are not a member of this room")
            position = await reader.current_position()
            if at:
                token = parse_pagination_token(at)
                # A topology token sits before the event at its stream position.
                position = min(position, token.pdu if isinstance(token, StreamToken) else token.stream - 1)
            if vis.left_at is not None:
                position = min(position, vis.left_at)
            entries = await reader.state_at(room_id, position, types=[(MEMBER, None)])
            entries = [e for e in entries
                       if (membership is None or e.membership == membership)
                       and (not_membership is None or e.membership != not_membership)]
            stored = await reader.events_by_ids(e.event_id for e in entries)
            now = now_ms()
            chunk = [to_client_event(stored[e.event_id], requester, include_room_id=True, now=now)
                     for e in sorted(entries, key=lambda e: e.state_key) if e.event_id in stored]
        return {"chunk": chunk}

    async def joined_members(self, requester: Requester, room_id: str) -> dict[str, Any]:
        async with self._db.read() as reader:
            own = await reader.current_state_entry(room_id, MEMBER, requester.user_id)
            if own is None or own.membership != "join":
                raise errors.Forbidden("You are not joined to this room")
            members = await reader.room_members(room_id, ["join"])
            stored = await reader.events_by_ids(m.event_id for m in members)
        joined: dict[str, Any] = {}
        for member in members:
            event = stored.get(member.event_id)
            content = json.loads(event.event_json).get("content", {}) if event else {}
            profile: dict[str, Any] = {}
            for key in ("displayname", "avatar_url"):
                value = content.get(key) if isinstance(content, dict) else None
                if isinstance(value, str):
                    profile["display_name" if key == "displayname" else key] = value
            joined[member.state_key] = profile
        return {"joined": joined}
