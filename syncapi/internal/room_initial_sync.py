"""GET /rooms/{roomId}/initialSync (room_initial_sync.yaml): a room's state
and latest messages in one answer, which clients now use only to peek into
rooms they are not in (room previews of ``world_readable`` rooms).

As Synapse: a member gets the current state and the latest messages; a
user who left gets them as they were when they left; anyone else only
when the room is world-readable (else 403). The messages come from the
same paging as /messages (history visibility applied), oldest first.
"""

from __future__ import annotations

import json
from typing import Any

from common import errors
from syncapi.filters import EventFilter
from syncapi.internal.client_events import Requester, now_ms, to_client_event
from syncapi.internal.rooms import RoomReads
from syncapi.internal.visibility import MembershipSpan, RoomVisibility
from syncapi.storage.database import SyncDatabase
from syncapi.storage.tables.current_state import MEMBER

DEFAULT_LIMIT = 10
# An account-data stream position past every change.
EVERYTHING = 2**62


async def room_initial_sync(database: SyncDatabase, reads: RoomReads, requester: Requester, room_id: str,
                            *, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    user_id = requester.user_id
    async with database.read() as reader:
        rows = await reader.membership_history(user_id, [room_id])
        vis = RoomVisibility(user_id, [MembershipSpan(m, a, r) for _, m, a, r in rows])
        own = await reader.current_state_entry(room_id, MEMBER, user_id)
        membership = own.membership if own is not None else None
        peeking = membership not in ("join", "leave", "ban") or not vis.ever_joined
        if peeking and await reader.latest_history_visibility(room_id) != "world_readable":
            raise errors.Forbidden("You are not allowed to see this room")
        position = await reader.current_position()
        if vis.left_at is not None and not peeking:
            position = min(position, vis.left_at)
        entries = await reader.state_at(room_id, position)
        if not entries:
            raise errors.Forbidden("You are not allowed to see this room")
        stored = await reader.events_by_ids(e.event_id for e in entries)
        now = now_ms()
        state = [to_client_event(e, requester, include_room_id=True, now=now)
                 for e in sorted(stored.values(), key=lambda e: e.stream_pos)]
        account_data: list[dict[str, Any]] = []
        if not peeking:
            for change in await reader.account_data_changes(user_id, after=0, upto=EVERYTHING):
                if change.room_id == room_id:
                    account_data.append({"type": change.type, "content": json.loads(change.content_json)})
    page = await reads.messages(requester, room_id, from_token=None, to_token=None, backwards=True,
                                limit=limit, event_filter=EventFilter())
    body: dict[str, Any] = {
        "room_id": room_id,
        "messages": {"chunk": list(reversed(page["chunk"])), "end": page["start"]},
        "state": state,
        "account_data": account_data,
    }
    if "end" in page:
        body["messages"]["start"] = page["end"]
    if membership in ("invite", "join", "leave", "ban") and not peeking:
        body["membership"] = membership
    return body
