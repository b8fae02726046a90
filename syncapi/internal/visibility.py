"""History visibility: which of a room's events a user may see
(content/client-server-api, "History visibility").

An event is visible when the room was ``world_readable`` at it, when the user
was joined at it, or when it is the user's own membership event. Otherwise
``joined`` hides it, ``invited`` shows it if the user was invited at it, and
``shared`` shows it to users who have been joined to the room (not to
peekers, nor to users only ever invited).
Whatever the setting, a user who has left sees nothing after leaving, except
in ``world_readable`` rooms. Memberships come from the state history, so the
check is pure and costs nothing per event beyond a scan of the user's few
membership changes in the room.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from syncapi.storage.tables.events import StoredEvent

MEMBER = "m.room.member"


@dataclass(frozen=True)
class MembershipSpan:
    membership: str | None
    added_pos: int
    # None while it is the current membership.
    removed_pos: int | None


class RoomVisibility:
    """One user's view of one room's history."""

    def __init__(self, user_id: str, spans: Iterable[MembershipSpan]) -> None:
        self.user_id = user_id
        self.spans = sorted(spans, key=lambda s: s.added_pos)
        current = [s for s in self.spans if s.removed_pos is None]
        self.current = current[0].membership if current else None
        self.ever_joined = any(s.membership == "join" for s in self.spans)
        self.ever_member = any(s.membership in ("join", "invite") for s in self.spans)
        # The position at which the user stopped being joined, if they are not now.
        self.left_at: int | None = None
        if self.current != "join" and current:
            self.left_at = current[0].added_pos

    def membership_at(self, position: int) -> str | None:
        for span in self.spans:
            if span.added_pos <= position and (span.removed_pos is None or position < span.removed_pos):
                return span.membership
        return None

    def can_see(self, event: StoredEvent) -> bool:
        visibility = event.history_visibility or "shared"
        if visibility == "world_readable":
            return True
        if event.type == MEMBER and event.state_key == self.user_id:
            return True
        if self.left_at is not None and event.stream_pos > self.left_at:
            return False
        membership = self.membership_at(event.stream_pos)
        if membership == "join":
            return True
        if visibility == "joined":
            return False
        if visibility == "invited":
            return membership == "invite"
        # shared: everyone who has been joined to the room; not peekers, nor
        # users who were only ever invited.
        return self.ever_joined

    def filter(self, events: Iterable[StoredEvent]) -> list[StoredEvent]:
        return [event for event in events if self.can_see(event)]


def visibility_by_room(user_id: str, rows: Iterable[tuple[str, str | None, int, int | None]]
                       ) -> dict[str, RoomVisibility]:
    """Groups ``Reader.membership_history`` rows into one RoomVisibility per room."""
    spans: dict[str, list[MembershipSpan]] = {}
    for room_id, membership, added, removed in rows:
        spans.setdefault(room_id, []).append(MembershipSpan(membership, added, removed))
    return {room_id: RoomVisibility(user_id, room_spans) for room_id, room_spans in spans.items()}
