"""Events as clients see them (client-server API "ClientEvent")."""

from __future__ import annotations

from typing import Any

from matrixlib.events import Event


def client_event(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {
        "content": event.content,
        "event_id": event.event_id,
        "origin_server_ts": event.origin_server_ts,
        "room_id": event.room_id,
        "sender": event.sender,
        "type": event.type,
    }
    if event.state_key is not None:
        out["state_key"] = event.state_key
    redacts = event.redacts
    if redacts is not None:
        # Clients of every version find it at the top level too.
        out["redacts"] = redacts
    if event.unsigned:
        out["unsigned"] = event.unsigned
    return out
