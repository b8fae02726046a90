"""Fetching history older than ours from servers in the room
(server-server-api "Backfilling and retrieving missing events").

The servers with joined members in the room (most members first) are asked
in turn for ``/backfill`` from the given events until one answers. Each
event is checked like a received PDU; events whose auth events we lack get
them from ``/event_auth`` (stored as outliers); then the events go to the
room server oldest first as ``INPUT_KIND_OLD``: stored with the state
before them when their prev events have state, before the room's current
history, without changing the current state. Events the room server holds
only as outliers (a join's auth chain) come back into the timeline so.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

from myelin.federationapi.v1 import federationapi_pb2 as pb
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common import errors
from federationapi.internal.context import FederationContext
from federationapi.internal.inbound.checks import CheckedPDU
from federationapi.internal.inbound.remote import FetchError
from federationapi.internal.inbound.room_input import OLD, InputFailed, RoomInput
from matrixlib.room_versions import UnknownRoomVersionError, get_room_version

logger = logging.getLogger(__name__)

MAX_BACKFILL_LIMIT = 100
DEFAULT_BACKFILL_LIMIT = 50
#: How many servers are tried before giving up.
MAX_SERVERS_TRIED = 5


async def servers_in_room(context: FederationContext, room_id: str) -> list[str]:
    """Other servers with joined members, most members first."""
    answer = await context.roomserver.query_memberships_for_room(
        rs_pb.QueryMembershipsForRoomRequest(room_id=room_id, joined_only=True))
    counts: Counter[str] = Counter()
    for member in answer.member_events:
        state_key = json.loads(member.pdu_json).get("state_key")
        if isinstance(state_key, str) and ":" in state_key:
            counts[state_key.partition(":")[2]] += 1
    counts.pop(context.server_name, None)
    return [server for server, _ in counts.most_common()]


async def perform_backfill(context: FederationContext, req: pb.PerformBackfillRequest) -> pb.PerformBackfillResponse:
    info = await context.roomserver.query_room_info(rs_pb.QueryRoomInfoRequest(room_id=req.room_id))
    if not info.room_exists:
        raise errors.NotFound(f"Unknown room {req.room_id}")
    try:
        room_version = get_room_version(info.room_version)
    except UnknownRoomVersionError as exc:
        raise errors.NotFound(str(exc)) from None
    if not req.from_event_ids:
        raise errors.BadJSON("from_event_ids is required")
    limit = max(1, min(req.limit or DEFAULT_BACKFILL_LIMIT, MAX_BACKFILL_LIMIT))
    for server in (await servers_in_room(context, req.room_id))[:MAX_SERVERS_TRIED]:
        room = RoomInput(context, server, req.room_id, room_version)
        try:
            events = await room.remote.backfill(list(req.from_event_ids), limit)
        except FetchError as exc:
            logger.info("backfill of %s from %s failed: %s", req.room_id, server, exc)
            continue
        return pb.PerformBackfillResponse(added=await input_backfilled(room, events))
    return pb.PerformBackfillResponse(added=0)


async def input_backfilled(room: RoomInput, events: list[CheckedPDU]) -> int:
    """Inputs the events oldest first; answers how many the room server accepted."""
    unique = {e.event_id: e for e in events}
    ordered = sorted(unique.values(), key=lambda e: (e.event.depth, e.event.origin_server_ts))
    batch_ids = set(unique)
    needed = {a for e in ordered for a in e.event.auth_event_ids if a not in batch_ids}
    missing = needed - await room.known_ids(needed)
    if missing:
        # Auth events older than what we have: from the auth chain of the
        # events that name them.
        for checked in ordered:
            if missing & set(checked.event.auth_event_ids):
                try:
                    await room.ensure_auth_events(checked)
                except (FetchError, InputFailed) as exc:
                    logger.info("backfilled %s lacks auth events: %s", checked.event_id, exc)
                missing -= await room.known_ids(missing)
                if not missing:
                    break
    results = await room.input([room.input_event(e, OLD) for e in ordered])
    added = 0
    for result in results:
        if result.outcome == rs_pb.INPUT_OUTCOME_ACCEPTED:
            added += 1
        elif result.outcome != rs_pb.INPUT_OUTCOME_DUPLICATE:
            logger.info("backfilled %s of %s: %s %s", result.event_id, room.room_id,
                        rs_pb.InputOutcome.Name(result.outcome), result.reason)
    return added
