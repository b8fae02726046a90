"""Conversions between matrixlib events and the contract's proto messages."""

from __future__ import annotations

from typing import Any

from myelin.roomserver.v1 import events_pb2

from matrixlib.events import HISTORY_VISIBILITY, Event
from matrixlib.redaction import redact

# The order in which history visibility values get more permissive.
_VISIBILITY_ORDER = ("joined", "invited", "shared", "world_readable")
DEFAULT_HISTORY_VISIBILITY = "shared"


def event_to_proto(event: Event, *, redacted: bool = False) -> events_pb2.Event:
    pdu: dict[str, Any] = redact(event.pdu, event.room_version) if redacted else event.pdu
    data = Event(pdu, event.room_version, event.event_id).to_json() if redacted else event.to_json()
    return events_pb2.Event(event_id=event.event_id, room_version=event.room_version.identifier,
                            pdu_json=data)


def stripped_state(event: Event) -> dict[str, Any]:
    """The stripped form of a state event (client-server API "Stripped state")."""
    return {"type": event.type, "state_key": event.state_key or "", "content": event.content,
            "sender": event.sender}


def history_visibility_of(event: Event | None) -> str:
    if event is None:
        return DEFAULT_HISTORY_VISIBILITY
    value = event.content.get("history_visibility")
    return value if isinstance(value, str) and value in _VISIBILITY_ORDER else DEFAULT_HISTORY_VISIBILITY


def more_permissive(a: str, b: str) -> str:
    order = {v: i for i, v in enumerate(_VISIBILITY_ORDER)}
    return a if order.get(a, 2) >= order.get(b, 2) else b


def is_history_visibility(event: Event) -> bool:
    return event.type == HISTORY_VISIBILITY and event.state_key == ""
