"""Stored events in the client format (content/client-server-api, "Room event format").

A client sees ``event_id``, ``type``, ``sender``, ``origin_server_ts``,
``content``, ``state_key`` for state events, ``redacts`` for redactions, and
``unsigned`` (``age``, ``transaction_id`` for the sending device only,
``prev_content``/``replaces_state`` for state, ``redacted_because``).
``room_id`` is left out inside /sync's rooms and present elsewhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from common import json_codec
from syncapi.storage.tables.events import StoredEvent


@dataclass(frozen=True)
class Requester:
    user_id: str
    device_id: str


def now_ms() -> int:
    return int(time.time() * 1000)


def format_pdu(pdu: dict[str, Any], event_id: str, *, include_room_id: bool, now: int,
               extra_unsigned: dict[str, Any] | None = None, room_id: str | None = None
               ) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_id": event_id,
        "type": pdu.get("type"),
        "sender": pdu.get("sender"),
        "origin_server_ts": pdu.get("origin_server_ts", 0),
        "content": pdu.get("content", {}),
    }
    if "state_key" in pdu:
        out["state_key"] = pdu["state_key"]
    if include_room_id:
        # A room version 12 create event has no room_id of its own.
        found = pdu.get("room_id", room_id)
        if isinstance(found, str):
            out["room_id"] = found
    if pdu.get("type") == "m.room.redaction":
        redacts = pdu.get("redacts", out["content"].get("redacts") if isinstance(out["content"], dict)
                          else None)
        if isinstance(redacts, str):
            out["redacts"] = redacts
    unsigned: dict[str, Any] = {}
    pdu_unsigned = pdu.get("unsigned")
    if isinstance(pdu_unsigned, dict):
        # Only what servers may pass on to clients (e.g. invite_room_state of a remote invite).
        for key in ("invite_room_state", "knock_room_state"):
            if key in pdu_unsigned:
                unsigned[key] = pdu_unsigned[key]
    if extra_unsigned:
        unsigned.update(extra_unsigned)
    unsigned["age"] = max(0, now - int(out["origin_server_ts"] or 0))
    out["unsigned"] = unsigned
    return out


def to_client_event(stored: StoredEvent, requester: Requester | None, *, include_room_id: bool,
                    now: int | None = None) -> dict[str, Any]:
    now = now_ms() if now is None else now
    pdu = json_codec.loads(stored.event_json)
    extra: dict[str, Any] = {}
    if stored.unsigned_json:
        extra.update(json_codec.loads(stored.unsigned_json))
    because = extra.get("redacted_because")
    if isinstance(because, dict) and "pdu" in because:
        extra["redacted_because"] = format_pdu(because["pdu"], str(because.get("event_id")),
                                               include_room_id=include_room_id, now=now,
                                               room_id=stored.room_id)
    if (requester is not None and stored.txn_id is not None and stored.sender == requester.user_id
            and stored.txn_device_id == requester.device_id):
        extra["transaction_id"] = stored.txn_id
    return format_pdu(pdu, stored.event_id, include_room_id=include_room_id, now=now,
                      extra_unsigned=extra, room_id=stored.room_id)


def stripped_state(pdus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stripped state events as the spec shapes them (type, state_key, content, sender)."""
    result = []
    for pdu in pdus:
        if not isinstance(pdu, dict):
            continue
        result.append({"type": pdu.get("type"), "state_key": pdu.get("state_key", ""),
                       "content": pdu.get("content", {}), "sender": pdu.get("sender")})
    return result
