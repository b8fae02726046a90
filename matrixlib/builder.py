"""Building, hashing and signing new events in their room version's format.

Spec: server-server-api "PDUs" and the room versions' event formats
(data/api/server-server/definitions/pdu_v1, pdu_v3, pdu_v4, pdu_v11,
pdu_v12); "Adding hashes and signatures to outgoing events".

Choices where the spec leaves room, following Synapse:

- No top-level ``origin``: the PDU schemas of spec v1.19 no longer have it
  and Synapse stopped sending it. Room versions 1-10 keep it through
  redaction when present, which only matters for events that carry it.
- ``redacts``: top level in room versions 1-10; in ``content`` only from
  version 11 (Synapse treats a top-level one as invalid there). Adding a
  top-level copy for old clients is a client-server API concern.
- Room versions 1 and 2 reference events as ``[event_id, {"sha256":
  reference hash}]``; the caller supplies the hashes it knows in
  ``event_hashes`` and an unknown one is sent as ``{}``, as Synapse does.
- Room version 12: the create event has no ``room_id``, and no event lists
  the create event in ``auth_events`` (an ID equal to the room's create
  event is dropped from ``auth_event_ids``).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from typing import Any

from matrixlib.canonical_json import encode_canonical_json
from matrixlib.events import CREATE, REDACTION, Event, EventFormatError
from matrixlib.room_versions import EventFormat, RoomVersion
from matrixlib.signing import SigningKey, hash_and_sign_event

# The spec caps depth at the largest signed 64-bit integer; the canonical
# JSON range is smaller still, so cap there.
MAX_DEPTH = 2**53 - 1

_LOCALPART_ALPHABET = string.ascii_letters + string.digits


def random_event_id_localpart() -> str:
    """A random localpart for a room version 1/2 event ID."""
    return "".join(secrets.choice(_LOCALPART_ALPHABET) for _ in range(18))


def _is_create_event(type: str, state_key: str | None) -> bool:
    return type == CREATE and state_key == ""


def build_event(
    room_version: RoomVersion,
    *,
    room_id: str | None,
    type: str,
    sender: str,
    content: Mapping[str, Any],
    state_key: str | None,
    prev_event_ids: list[str],
    auth_event_ids: list[str],
    depth: int,
    origin_server_ts: int,
    server_name: str,
    signing_key: SigningKey,
    redacts: str | None = None,
    unsigned: Mapping[str, Any] | None = None,
    event_id_localpart: str | None = None,
    event_hashes: Mapping[str, str] | None = None,
) -> Event:
    """A new, hashed and signed event. ``server_name`` is this server (it
    signs, and names room version 1/2 event IDs). Raises ``ValueError``
    (``EventFormatError`` or ``CanonicalJSONError``) for an event that
    cannot be built, e.g. a float in the content."""
    is_create = _is_create_event(type, state_key)
    if room_version.hydra and is_create:
        if room_id is not None:
            raise EventFormatError("a room version 12 create event has no room_id: its ID makes the room ID")
    elif room_id is None:
        raise EventFormatError("room_id is required")
    if redacts is not None and type != REDACTION:
        raise EventFormatError("only m.room.redaction events have redacts")
    depth = min(depth, MAX_DEPTH)

    event_content = dict(content)
    if room_version.hydra and room_id is not None:
        # v12: the create event is implied by the room ID.
        create_event_id = "$" + room_id[1:]
        auth_event_ids = [e for e in auth_event_ids if e != create_event_id]

    pdu: dict[str, Any] = {
        "type": type,
        "sender": sender,
        "content": event_content,
        "depth": depth,
        "origin_server_ts": origin_server_ts,
        "hashes": {},
        "signatures": {},
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    if state_key is not None:
        pdu["state_key"] = state_key
    if unsigned is not None:
        pdu["unsigned"] = dict(unsigned)

    if room_version.event_format is EventFormat.V1:
        hashes = event_hashes or {}

        def ref(event_id: str) -> list[Any]:
            known = hashes.get(event_id)
            return [event_id, {"sha256": known} if known else {}]

        pdu["prev_events"] = [ref(e) for e in prev_event_ids]
        pdu["auth_events"] = [ref(e) for e in auth_event_ids]
        pdu["event_id"] = f"${event_id_localpart or random_event_id_localpart()}:{server_name}"
    else:
        if event_id_localpart is not None:
            raise EventFormatError("event IDs of this room version are reference hashes")
        pdu["prev_events"] = list(prev_event_ids)
        pdu["auth_events"] = list(auth_event_ids)

    if redacts is not None:
        if room_version.updated_redaction_rules:
            if event_content.setdefault("redacts", redacts) != redacts:
                raise EventFormatError("content.redacts differs from redacts")
        else:
            pdu["redacts"] = redacts

    # Refuse to sign what other servers must reject (floats, huge integers).
    encode_canonical_json(pdu)
    signed = hash_and_sign_event(pdu, room_version, server_name, signing_key)
    return Event(signed, room_version)
