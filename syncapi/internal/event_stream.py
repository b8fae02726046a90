"""The deprecated event stream, GET /events (events.yaml, "peeking_events"),
and the deprecated GET /initialSync (initial_sync.yaml).

Clients still use /events to follow a room they peek into (after
/rooms/{roomId}/initialSync, whose ``messages.end`` is the first ``from``).
``from`` is a /sync or pagination token; the answer is the events after it
(in the user's joined rooms, or in the peeked room), oldest first, and an
``end`` token for the next call. It waits up to ``timeout`` for the user's
news; a peek into a room the user is not in waits at most
``PEEK_WAIT_SECONDS`` (nothing notifies the user of that room), so the
client polls again soon.
"""

from __future__ import annotations

import json
from typing import Any

from common import errors
from syncapi.internal.client_events import Requester, now_ms, to_client_event
from syncapi.internal.room_initial_sync import EVERYTHING, room_initial_sync
from syncapi.internal.rooms import RoomReads
from syncapi.internal.visibility import MembershipSpan, RoomVisibility
from syncapi.notifier import Notifier
from syncapi.storage.database import Reader, SyncDatabase
from syncapi.storage.tables.events import StoredEvent
from syncapi.tokens import StreamToken, parse_pagination_token

EVENTS_LIMIT = 100
PEEK_WAIT_SECONDS = 5.0
DEFAULT_TIMEOUT_MS = 30_000


def _position_of(token: str) -> int:
    parsed = parse_pagination_token(token)
    # A topology token sits before the event at its stream position.
    return parsed.pdu if isinstance(parsed, StreamToken) else parsed.stream - 1


async def _visibility(reader: Reader, user_id: str, room_id: str) -> RoomVisibility:
    rows = await reader.membership_history(user_id, [room_id])
    return RoomVisibility(user_id, [MembershipSpan(m, a, r) for _, m, a, r in rows])


async def event_stream(database: SyncDatabase, notifier: Notifier, requester: Requester, *,
                       from_token: str | None, timeout_ms: int, room_id: str | None) -> dict[str, Any]:
    user_id = requester.user_id
    current = notifier.current_token()
    position = current.pdu if from_token is None else min(_position_of(from_token), current.pdu)
    peeking = False
    if room_id is not None:
        async with database.read() as reader:
            vis = await _visibility(reader, user_id, room_id)
            if vis.current != "join":
                if not vis.ever_joined and await reader.latest_history_visibility(room_id) != "world_readable":
                    raise errors.Forbidden("You are not allowed to see this room")
                peeking = True
    timeout = max(0, timeout_ms) / 1000
    if peeking:
        timeout = min(timeout, PEEK_WAIT_SECONDS)
    if not await _has_events(database, user_id, room_id, position, notifier.current_token().pdu):
        await notifier.wait_for_news(user_id, position, timeout)
    upto = notifier.current_token().pdu
    chunk: list[StoredEvent] = []
    async with database.read() as reader:
        rooms = [room_id] if room_id is not None else sorted(
            await reader.joined_rooms_with_events(user_id, after=position, upto=upto))
        for each in rooms:
            vis = await _visibility(reader, user_id, each)
            found = await reader.recent_events(each, after=position, upto=upto, limit=EVENTS_LIMIT + 1)
            chunk.extend(e for e in found if vis.can_see(e))
    chunk.sort(key=lambda e: e.stream_pos)
    end = upto
    if len(chunk) > EVENTS_LIMIT:
        chunk = chunk[:EVENTS_LIMIT]
        end = chunk[-1].stream_pos
    now = now_ms()
    end_token = StreamToken(end, *(notifier.current_token().position(name) for name in
                                   ("typing", "receipt", "presence", "to_device", "account_data", "device_list")))
    return {"start": from_token or str(StreamToken(position)), "end": str(end_token),
            "chunk": [to_client_event(e, requester, include_room_id=True, now=now) for e in chunk]}


async def _has_events(database: SyncDatabase, user_id: str, room_id: str | None, after: int, upto: int) -> bool:
    if upto <= after:
        return False
    async with database.read() as reader:
        if room_id is None:
            return bool(await reader.joined_rooms_with_events(user_id, after=after, upto=upto))
        return bool(await reader.recent_events(room_id, after=after, upto=upto, limit=1))


async def global_initial_sync(database: SyncDatabase, notifier: Notifier, reads: RoomReads,
                              requester: Requester, *, limit: int) -> dict[str, Any]:
    """GET /initialSync: every joined room's snapshot (as
    /rooms/{roomId}/initialSync), invites, the global account data, and
    the token /events continues from."""
    user_id = requester.user_id
    end = notifier.current_token()
    async with database.read() as reader:
        joined = await reader.user_memberships(user_id, ["join"])
        invites = await reader.user_memberships(user_id, ["invite"])
        account_data = [{"type": change.type, "content": json.loads(change.content_json)}
                        for change in await reader.account_data_changes(user_id, after=0, upto=EVERYTHING)
                        if not change.room_id]
    rooms: list[dict[str, Any]] = []
    for membership in joined:
        try:
            rooms.append(await room_initial_sync(database, reads, requester, membership.room_id, limit=limit))
        except errors.Forbidden:
            continue
    for membership in invites:
        rooms.append({"room_id": membership.room_id, "membership": "invite"})
    return {"end": str(end), "rooms": rooms, "presence": [], "account_data": account_data}
