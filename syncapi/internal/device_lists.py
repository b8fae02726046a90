"""The end-to-end encryption parts of /sync and GET /keys/changes
(modules/end_to_end_encryption.md, "Tracking the device list for a user").

``device_lists.changed``: users sharing a room with the syncing user (and the
user themselves) whose devices or keys changed since the token, and users who
joined one of the user's rooms since (or are in a room the user joined since),
whose devices the client does not track yet. ``device_lists.left``: users who
shared a room with the user at the token and share none now.

The membership part is read from the response itself: every membership
change since the token is a member event in a joined or left room's
timeline or state there, so an idle sync costs no query.

``device_one_time_keys_count`` and ``device_unused_fallback_key_types`` come
from the user API, asked once per sync that has anything to say.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from myelin.userapi.v1 import userapi_pb2 as ua_pb

from syncapi.internal.client_events import Requester
from syncapi.storage.database import SyncDatabase
from syncapi.tokens import StreamToken

MEMBER = "m.room.member"
# As Synapse: clients read signed_curve25519's count even when it is zero.
DEFAULT_ONE_TIME_KEY_ALGORITHM = "signed_curve25519"


@runtime_checkable
class KeyCountsAPI(Protocol):
    async def query_one_time_key_counts(self, req: ua_pb.QueryOneTimeKeyCountsRequest) -> ua_pb.OneTimeKeyCounts: ...


def _member_events(entry: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for section in ("state", "state_after", "timeline"):
        for event in (entry.get(section) or {}).get("events", []):
            if isinstance(event, dict) and event.get("type") == MEMBER and isinstance(event.get("state_key"), str):
                yield event


def _membership(event: dict[str, Any]) -> str:
    content = event.get("content")
    return str(content.get("membership", "")) if isinstance(content, dict) else ""


async def device_list_summary(database: SyncDatabase, user_id: str, since: StreamToken, upto: StreamToken,
                              rooms: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """(changed, left) between the tokens. ``rooms`` is the /sync answer's
    ``rooms`` when there is one (membership changes are read from it);
    without it (GET /keys/changes) they are read from the read model."""
    changed: set[str] = set()
    candidates_left: set[str] = set()
    newly_joined_rooms: set[str] = set()
    left_rooms: set[str] = set()
    if rooms is not None:
        for room_id, entry in (rooms.get("join") or {}).items():
            for event in _member_events(entry):
                target, membership = event["state_key"], _membership(event)
                if membership == "join":
                    changed.add(target)
                    if target == user_id:
                        newly_joined_rooms.add(room_id)
                elif membership in ("leave", "ban"):
                    candidates_left.add(target)
        left_rooms = set(rooms.get("leave") or {})
    if not (since.device_list < upto.device_list or (rooms is None and since.pdu < upto.pdu)
            or newly_joined_rooms or left_rooms or candidates_left):
        # Nothing to look up: no connection taken (most woken syncs).
        return sorted(changed), []
    async with database.read() as reader:
        if since.device_list < upto.device_list:
            changed |= await reader.device_list_changes(user_id, after=since.device_list, upto=upto.device_list)
        if rooms is None and since.pdu < upto.pdu:
            for row in await reader.user_memberships(user_id, ["join"], added_after=since.pdu):
                newly_joined_rooms.add(row.room_id)
            for row in await reader.user_memberships(user_id, ["leave", "ban"], added_after=since.pdu):
                left_rooms.add(row.room_id)
            for row in await reader.user_memberships(user_id, ["join"]):
                for member in await reader.room_members(row.room_id, ["join", "leave", "ban"]):
                    if member.added_pos <= since.pdu or member.added_pos > upto.pdu:
                        continue
                    if member.membership == "join":
                        changed.add(member.state_key)
                    else:
                        candidates_left.add(member.state_key)
        for room_id in newly_joined_rooms:
            changed |= {m.state_key for m in await reader.room_members(room_id, ["join"])}
        for room_id in left_rooms:
            candidates_left |= {m.state_key for m in await reader.room_members(room_id, ["join"])}
        left: set[str] = set()
        if candidates_left:
            sharing = await reader.users_sharing_rooms(user_id)
            left = {u for u in candidates_left if u not in sharing and u != user_id}
    return sorted(changed - left), sorted(left)


def _is_idle(body: dict[str, Any]) -> bool:
    rooms = body.get("rooms") or {}
    return not any(rooms.get(kind) for kind in ("join", "invite", "leave", "knock")) and not any(
        (body.get(part) or {}).get("events") for part in ("to_device", "presence", "account_data"))


def start_key_counts(key_counts: KeyCountsAPI, requester: Requester) -> asyncio.Task[ua_pb.OneTimeKeyCounts]:
    """The device's key counts asked for now, to be given to ``add_e2ee_fields``
    (which waits for them or, not needing them, cancels the query)."""
    return asyncio.create_task(key_counts.query_one_time_key_counts(ua_pb.QueryOneTimeKeyCountsRequest(
        user_id=requester.user_id, device_id=requester.device_id)))


async def add_e2ee_fields(body: dict[str, Any], database: SyncDatabase, key_counts: KeyCountsAPI | None,
                          requester: Requester, since: StreamToken | None, *,
                          asked: asyncio.Task[ua_pb.OneTimeKeyCounts] | None = None) -> None:
    """Adds device_lists (incremental syncs) and the key counts to a /sync
    answer. ``asked``: the counts asked for already (``start_key_counts``,
    while the answer was built: in the split deployment a call to the user
    API, which then overlaps the answer's reads); cancelled if not needed."""
    try:
        await _add_e2ee_fields(body, database, key_counts, requester, since, asked)
    finally:
        forget_key_counts(asked)


def forget_key_counts(asked: asyncio.Task[ua_pb.OneTimeKeyCounts] | None) -> None:
    """Cancels counts asked for and not needed (or, done, takes their outcome:
    a failure nobody waited for is not reported as never retrieved)."""
    if asked is None:
        return
    if not asked.done():
        asked.cancel()
    elif not asked.cancelled():
        asked.exception()


async def _add_e2ee_fields(body: dict[str, Any], database: SyncDatabase, key_counts: KeyCountsAPI | None,
                           requester: Requester, since: StreamToken | None,
                           asked: asyncio.Task[ua_pb.OneTimeKeyCounts] | None) -> None:
    changed: list[str] = []
    left: list[str] = []
    if since is not None:
        upto = StreamToken.parse(body["next_batch"])
        changed, left = await device_list_summary(database, requester.user_id, since, upto, body.get("rooms"))
        body["device_lists"] = {"changed": changed, "left": left}
    if key_counts is None or not requester.device_id:
        return
    if since is not None and not changed and not left and _is_idle(body):
        # Nothing new: the client keeps the counts it has.
        return
    if asked is None:
        asked = start_key_counts(key_counts, requester)
    counts = await asked
    one_time = dict(counts.one_time_key_counts)
    one_time.setdefault(DEFAULT_ONE_TIME_KEY_ALGORITHM, 0)
    body["device_one_time_keys_count"] = one_time
    body["device_unused_fallback_key_types"] = list(counts.unused_fallback_key_types)
