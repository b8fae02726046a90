"""The federation sender's reader of ``roomserver.output``.

For every NewRoomEvent it keeps the room's joined servers from the state
annotations (member events with membership "join" entering and leaving the
current state), and queues the event for every other joined server when
this server created it or accepted it in a make_/send_ handshake: the
event did not reach us over /send or backfill (``origin`` empty). A membership event about a
remote user also goes to that user's server (a kick or ban must reach it).
Backfilled (historical) events are never sent.

Each room's last handled ``room_stream_position`` is stored in the same
transaction as what the entry queued or changed, so a replay after a crash
queues nothing twice; entries that change nothing (most messages of rooms
without other servers, events from other servers) write nothing. A gap in
the positions (entries this reader never saw: a new database, or the log's
retention) makes it read the room's joined members from the room server
instead.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
from myelin.roomserver.v1 import output_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common.log import LogRecord
from common.lru_cache import LRUCache
from federationapi.sender.queues import DestinationQueues
from federationapi.sender.storage import JoinedMember, OutgoingPDU, SenderDatabase
from matrixlib.events import Event
from matrixlib.ids import is_valid_server_name
from matrixlib.room_versions import get_room_version
from roomserver.api import FederationRoomserverAPI

logger = logging.getLogger(__name__)

MEMBER = "m.room.member"
REMOVALS = ("leave", "ban")


def server_of(user_id: str) -> str:
    """The server part of a user ID ("" when it has none or it is not a
    valid server name: nothing is ever sent there)."""
    server = user_id.split(":", 1)[1] if ":" in user_id else ""
    return server if is_valid_server_name(server) else ""


def _joined_member(event_id: str, pdu: dict[str, Any]) -> JoinedMember | None:
    if pdu.get("type") != MEMBER:
        return None
    state_key = pdu.get("state_key")
    content = pdu.get("content")
    if not isinstance(state_key, str) or not isinstance(content, dict) or content.get("membership") != "join":
        return None
    server = server_of(state_key)
    return JoinedMember(event_id, state_key, server) if server else None


# Rooms whose last entry and remote presence are kept in memory.
MAX_ROOMS_REMEMBERED = 10_000


class RoomserverOutputConsumer:
    def __init__(self, database: SenderDatabase, queues: DestinationQueues,
                 roomserver: FederationRoomserverAPI, server_name: str) -> None:
        self._db = database
        self._queues = queues
        self._roomserver = roomserver
        self._server_name = server_name
        # Per room: the last entry handled, and whether other servers are
        # in it (as of the last write), so that entries that change nothing
        # cost no database write. Bounded (issue 6); for a forgotten room
        # the position is read from the database (it may lag: the members
        # are then read again) and "other servers" is unknown (the entry is
        # written): slower, never wrong.
        self._positions: LRUCache[str, int] = LRUCache(MAX_ROOMS_REMEMBERED)
        self._has_other_servers: LRUCache[str, bool] = LRUCache(MAX_ROOMS_REMEMBERED)

    async def handle_record(self, record: LogRecord) -> None:
        output = output_log_pb2.OutputEvent.FromString(record.value)
        if output.WhichOneof("payload") == "new_room_event":
            await self.on_new_room_event(output.new_room_event)

    async def on_new_room_event(self, msg: output_log_pb2.NewRoomEvent) -> None:
        # The room server's own output: read, not validated again as an event.
        pdu = orjson.loads(msg.event.pdu_json)
        room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
        if not isinstance(room_id, str):
            # Not in the JSON of a v12 create event: derived from its ID.
            event = Event.from_json(msg.event.pdu_json, get_room_version(msg.event.room_version),
                                    msg.event.event_id)
            pdu, room_id = event.pdu, event.room_id
        position = msg.room_stream_position
        handled = self._positions.get(room_id)
        if handled is None:
            # Stored only when an entry changed something, so it may lag
            # behind: a "gap" then costs one needless read of the members.
            handled = await self._db.room_position(room_id)
        if handled is not None and position <= handled:
            return
        reset: list[JoinedMember] | None = None
        if (handled is None and position > 1) or (handled is not None and position > handled + 1):
            logger.info("federation sender: missed output entries of %s (at %s, now %d): reading its members",
                        room_id, handled, position)
            reset = await self._current_members(room_id)
        joined: list[JoinedMember] = []
        if not msg.historical:
            joined = await self._joined_in(msg, pdu)
        outgoing = None
        if self._is_ours_to_send(msg, pdu):
            extra: frozenset[str] = frozenset()
            state_key = pdu.get("state_key")
            content = pdu.get("content")
            membership = content.get("membership") if isinstance(content, dict) else None
            # A kick, a ban or a withdrawn invite must reach the user's
            # server even though it has no one left in the room (an invite
            # went there over /invite already).
            if (pdu.get("type") == MEMBER and membership in REMOVALS and isinstance(state_key, str)
                    and server_of(state_key)):
                extra = frozenset({server_of(state_key)})
            outgoing = OutgoingPDU(msg.event.event_id, msg.event.pdu_json.decode("utf-8"), extra)
        left = [] if msg.historical else list(msg.removes_state_event_ids)
        changes_nothing = reset is None and not joined and not left and (
            outgoing is None or self._has_other_servers.get(room_id) is False)
        if changes_nothing:
            # Most entries (messages in rooms of local users only, events
            # from other servers): no write at all. A replay of one after a
            # crash changes nothing either.
            self._positions.put(room_id, position)
            return
        written = await self._db.write_room_event(room_id, position, joined=joined, left_event_ids=left,
                                                  reset_members=reset, pdu=outgoing)
        self._positions.put(room_id, position)
        if written is None:
            return
        self._has_other_servers.put(room_id, written.has_other_servers)
        if written.destinations:
            self._queues.wake(written.destinations)

    def _is_ours_to_send(self, msg: output_log_pb2.NewRoomEvent, pdu: dict[str, Any]) -> bool:
        if msg.historical or msg.origin:
            return False
        # Made here: by our users, or by another server's user through our
        # make_join/send_join (leave, knock) handshake, which the resident
        # sends on to the room's other servers (server-server API "Joining
        # Rooms"); the federation API inputs those without an origin.
        return isinstance(pdu.get("sender"), str)

    async def _joined_in(self, msg: output_log_pb2.NewRoomEvent, pdu: dict[str, Any]) -> list[JoinedMember]:
        """The joined members among the state events the entry adds."""
        if not msg.adds_state_event_ids:
            return []
        known: dict[str, dict[str, Any]] = {msg.event.event_id: pdu}
        for added in msg.adds_state_events:
            known[added.event_id] = json.loads(added.pdu_json)
        missing = [e for e in msg.adds_state_event_ids if e not in known]
        if missing:
            # Left out of the entry when too big (a join bringing a large
            # room's state): fetched by ID.
            answer = await self._roomserver.query_events_by_id(rs_pb.QueryEventsByIDRequest(event_ids=missing))
            for event in answer.events:
                known[event.event_id] = json.loads(event.pdu_json)
        members = []
        for event_id in msg.adds_state_event_ids:
            added_pdu = known.get(event_id)
            if added_pdu is None:
                logger.warning("federation sender: added state event %s is unknown to the room server", event_id)
                continue
            member = _joined_member(event_id, added_pdu)
            if member is not None:
                members.append(member)
        return members

    async def _current_members(self, room_id: str) -> list[JoinedMember]:
        answer = await self._roomserver.query_memberships_for_room(
            rs_pb.QueryMembershipsForRoomRequest(room_id=room_id, joined_only=True))
        members = []
        for event in answer.member_events:
            member = _joined_member(event.event_id, json.loads(event.pdu_json))
            if member is not None:
                members.append(member)
        return members
