"""The ``rooms.knock`` section of /sync (data/api/client-server/sync.yaml,
``KnockedRoom``; content/client-server-api, "Knocking on rooms").

A room where the user's current membership is ``knock`` comes with
``knock_state``: stripped state events that let a client show the room,
the user's own knock member event among them. For a room this server is in,
they are read from the room's current state. For a knock made through
another server the room's state is not here: the room server's output
entry for the knock (a NewInviteEvent whose event is the knock, with the
``knock_room_state`` that server answered, federationapi/internal/
membership.py ``perform_knock``) is kept with the invites
(tables/invites.py ``select_active_knocks``) and its state is served. A
knock event in the room's state that carries ``knock_room_state`` in its
``unsigned`` is served with that state too.

Once the membership changes (an invite, a join, a leave: the knock accepted,
rejected or retracted) the room is no longer a knock and the other sections
report it.
"""

from __future__ import annotations

import json
from typing import Any

from syncapi.filters import Filter
from syncapi.internal.client_events import stripped_state
from syncapi.storage.database import Reader
from syncapi.storage.tables import invites as invites_t
from syncapi.storage.tables.current_state import StateEntry

KNOCK = "knock"
#: The state a knocker is shown (as in invite_room_state / knock_room_state).
KNOCK_STATE_TYPES: tuple[str, ...] = ("m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
                                      "m.room.canonical_alias", "m.room.encryption", "m.room.topic")


async def knocked_rooms(reader: Reader, user_id: str, *, after: int | None, upto: int,
                        sync_filter: Filter) -> dict[str, Any]:
    """``rooms.knock``: the rooms the user knocks on now whose knock came in
    ``(after, upto]`` (every one when ``after`` is None: an initial sync)."""
    knocks = [m for m in await reader.user_memberships(user_id, [KNOCK], added_after=after)
              if m.added_pos <= upto and sync_filter.room.allows_room(m.room_id)]
    knock_events = await reader.events_by_ids(m.event_id for m in knocks) if knocks else {}
    result: dict[str, Any] = {}
    for membership in sorted(knocks, key=lambda m: m.added_pos):
        stored = knock_events.get(membership.event_id)
        if stored is None:
            continue
        knock_pdu = json.loads(stored.event_json)
        events = await _room_state(reader, membership, knock_pdu, upto)
        events.append(knock_pdu)
        result[membership.room_id] = {"knock_state": {"events": stripped_state(events)}}
    remote = [k for k in await invites_t.select_active_knocks(reader.conn, user_id, after=after or 0, upto=upto)
              if k.room_id not in result and sync_filter.room.allows_room(k.room_id)]
    if remote:
        # Where this server has the room's state, that state decides (the
        # user may be in the room by now).
        current = await reader.memberships_in_rooms(user_id, sorted(k.room_id for k in remote))
        for stored_knock in remote:
            if current.get(stored_knock.room_id) in (None, KNOCK):
                result[stored_knock.room_id] = {
                    "knock_state": {"events": stripped_state(json.loads(stored_knock.invite_state_json))}}
    return result


async def _room_state(reader: Reader, membership: StateEntry, knock_pdu: dict[str, Any],
                      upto: int) -> list[dict[str, Any]]:
    """The room's state a knocker sees, without their own member event."""
    unsigned = knock_pdu.get("unsigned")
    given = unsigned.get("knock_room_state") if isinstance(unsigned, dict) else None
    if isinstance(given, list):
        # A knock through another server: what that server said of the room.
        return [s for s in given if isinstance(s, dict)
                and not (s.get("type") == "m.room.member" and s.get("state_key") == membership.state_key)]
    entries = await reader.state_at(membership.room_id, upto, types=[(t, "") for t in KNOCK_STATE_TYPES])
    found = await reader.events_by_ids(e.event_id for e in entries)
    state: list[dict[str, Any]] = []
    for entry in sorted(entries, key=lambda e: e.added_pos):
        stored = found.get(entry.event_id)
        if stored is not None:
            state.append(json.loads(stored.event_json))
    return state
