"""Events (PDUs) as the protocol library sees them.

An ``Event`` wraps the PDU dict exactly as it is signed and sent over
federation, with typed accessors that hide the differences between event
formats: event IDs that travel in the event (v1, v2) or are the reference
hash (v3+), auth and prev events as ``[id, hashes]`` pairs (v1, v2) or plain
IDs, ``redacts`` at the top level (v1-10) or in the content (v11+), and the
room ID of a v12 create event, which is derived from its own event ID.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from matrixlib.canonical_json import decode_json, encode_canonical_json
from matrixlib.room_versions import EventFormat, RoomVersion

# Event types the library refers to by name.
CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
HISTORY_VISIBILITY = "m.room.history_visibility"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
REDACTION = "m.room.redaction"
ALIASES = "m.room.aliases"
CANONICAL_ALIAS = "m.room.canonical_alias"
NAME = "m.room.name"
TOPIC = "m.room.topic"
GUEST_ACCESS = "m.room.guest_access"
SERVER_ACL = "m.room.server_acl"
TOMBSTONE = "m.room.tombstone"
ENCRYPTION = "m.room.encryption"

StateKey = tuple[str, str]


class EventFormatError(ValueError):
    """The PDU does not have the shape its room version requires."""


class Event:
    """One PDU of a room of a known version. Immutable once built."""

    __slots__ = ("__dict__", "_event_id", "pdu", "room_version")

    def __init__(self, pdu: Mapping[str, Any], room_version: RoomVersion,
                 event_id: str | None = None) -> None:
        self.pdu: dict[str, Any] = dict(pdu)
        self.room_version = room_version
        if room_version.event_format is EventFormat.V1:
            found = self.pdu.get("event_id")
            if event_id is None:
                event_id = found
            if not isinstance(event_id, str):
                raise EventFormatError("event_id is required in this room version")
            self.pdu["event_id"] = event_id
        else:
            # The ID of a v3+ event is its reference hash; an `event_id` key
            # someone left in the JSON is not part of the event.
            self.pdu.pop("event_id", None)
        self._event_id = event_id
        _check_shape(self.pdu, room_version)

    @classmethod
    def from_json(cls, pdu_json: bytes | str, room_version: RoomVersion,
                  event_id: str | None = None) -> Event:
        try:
            pdu = decode_json(pdu_json)
        except ValueError as e:
            raise EventFormatError(f"event is not valid JSON: {e}") from None
        if not isinstance(pdu, dict):
            raise EventFormatError("event is not a JSON object")
        return cls(pdu, room_version, event_id)

    # -- identity -----------------------------------------------------------

    @property
    def event_id(self) -> str:
        if self._event_id is None:
            from matrixlib.hashes import compute_event_id

            self._event_id = compute_event_id(self.pdu, self.room_version)
        return self._event_id

    @cached_property
    def room_id(self) -> str:
        room_id = self.pdu.get("room_id")
        if isinstance(room_id, str):
            return room_id
        if self.room_version.hydra and self.type == CREATE and self.state_key == "":
            # v12: the room ID is the create event's reference hash.
            return "!" + self.event_id[1:]
        raise EventFormatError("event has no room_id")

    # -- fields -------------------------------------------------------------

    @property
    def type(self) -> str:
        return str(self.pdu["type"])

    @property
    def sender(self) -> str:
        return str(self.pdu["sender"])

    @property
    def state_key(self) -> str | None:
        value = self.pdu.get("state_key")
        return value if isinstance(value, str) else None

    def is_state(self) -> bool:
        return "state_key" in self.pdu

    @property
    def state_tuple(self) -> StateKey:
        """The (type, state_key) this state event sets."""
        if self.state_key is None:
            raise EventFormatError(f"{self.event_id} is not a state event")
        return (self.type, self.state_key)

    @property
    def content(self) -> dict[str, Any]:
        content = self.pdu.get("content")
        return content if isinstance(content, dict) else {}

    @property
    def depth(self) -> int:
        return int(self.pdu.get("depth", 0))

    @property
    def origin_server_ts(self) -> int:
        return int(self.pdu.get("origin_server_ts", 0))

    @property
    def origin(self) -> str:
        """The server that created the event (the sender's server)."""
        return self.sender.split(":", 1)[1] if ":" in self.sender else ""

    @property
    def unsigned(self) -> dict[str, Any]:
        unsigned = self.pdu.get("unsigned")
        return unsigned if isinstance(unsigned, dict) else {}

    @property
    def signatures(self) -> dict[str, dict[str, str]]:
        sigs = self.pdu.get("signatures")
        return sigs if isinstance(sigs, dict) else {}

    @cached_property
    def prev_event_ids(self) -> list[str]:
        return _event_refs(self.pdu.get("prev_events", []), self.room_version)

    @cached_property
    def auth_event_ids(self) -> list[str]:
        return _event_refs(self.pdu.get("auth_events", []), self.room_version)

    @property
    def redacts(self) -> str | None:
        """The event a redaction redacts, wherever this version keeps it."""
        if self.type != REDACTION:
            return None
        if self.room_version.updated_redaction_rules:
            # Only the content's: a top-level one is not part of the v11
            # format, and Synapse reads only the content's too.
            value = self.content.get("redacts")
        else:
            value = self.pdu.get("redacts")
        return value if isinstance(value, str) else None

    @property
    def membership(self) -> str | None:
        """``content.membership`` of an m.room.member event."""
        if self.type != MEMBER:
            return None
        value = self.content.get("membership")
        return value if isinstance(value, str) else None

    # -- serialisation ------------------------------------------------------

    def to_json(self) -> bytes:
        """Canonical JSON of the PDU (what is stored and sent to servers).
        Encoded once: the event is immutable, and a sent event's JSON is
        wanted for its size check, its transaction record, its input and
        its storage."""
        encoded: bytes | None = self.__dict__.get("_canonical_json")
        if encoded is None:
            # encode_canonical_json already returns an exact-size copy (not
            # orjson's 4 KiB working buffer), which a cached event may keep
            # as long as itself.
            encoded = encode_canonical_json(self.pdu, strict=self.room_version.strict_canonical_json)
            self.__dict__["_canonical_json"] = encoded
        return encoded

    def __repr__(self) -> str:
        return f"<Event {self.event_id} {self.type} {self.state_key!r} in {self.pdu.get('room_id')}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.event_id == self.event_id

    def __hash__(self) -> int:
        return hash(self.event_id)


def _event_refs(value: Any, room_version: RoomVersion) -> list[str]:
    if not isinstance(value, list):
        raise EventFormatError("prev_events and auth_events must be lists")
    refs: list[str] = []
    for item in value:
        if room_version.event_format is EventFormat.V1:
            # [event_id, {"sha256": ...}] pairs
            if not (isinstance(item, list) and item and isinstance(item[0], str)):
                raise EventFormatError("v1 event references are [event_id, hashes] pairs")
            refs.append(item[0])
        else:
            if not isinstance(item, str):
                raise EventFormatError("event references are event ID strings")
            refs.append(item)
    return refs


_REQUIRED_STR = ("type", "sender")


def _check_shape(pdu: dict[str, Any], room_version: RoomVersion) -> None:
    """The checks every PDU must pass before anything else looks at it."""
    for key in _REQUIRED_STR:
        if not isinstance(pdu.get(key), str):
            raise EventFormatError(f"{key} must be a string")
    if "state_key" in pdu and not isinstance(pdu["state_key"], str):
        raise EventFormatError("state_key must be a string")
    if not isinstance(pdu.get("content", None), dict):
        raise EventFormatError("content must be an object")
    is_v12_create = room_version.hydra and pdu["type"] == CREATE and pdu.get("state_key") == ""
    if is_v12_create:
        if "room_id" in pdu:
            raise EventFormatError("a room version 12 create event has no room_id")
    elif not isinstance(pdu.get("room_id"), str):
        raise EventFormatError("room_id must be a string")
    for key in ("depth", "origin_server_ts"):
        if key in pdu and (not isinstance(pdu[key], int) or isinstance(pdu[key], bool)):
            raise EventFormatError(f"{key} must be an integer")
    _event_refs(pdu.get("prev_events", []), room_version)
    _event_refs(pdu.get("auth_events", []), room_version)
