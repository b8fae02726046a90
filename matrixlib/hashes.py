"""Content hashes, reference hashes and hash-derived event and room IDs.

Spec: server-server-api "Calculating the content hash for an event" and
"Calculating the reference hash for an event"; rooms/v3 and v4 "Event IDs";
rooms/v12 (room IDs); appendices "Unpadded Base64".

Hashes are computed over the canonical JSON of the event without the range
and float checks: events of room versions 1-5 may carry integers outside the
canonical range, and their hashes must still come out as their origin server
computed them. Whether such values are allowed at all is the job of event
validation (``RoomVersion.strict_canonical_json``), not of hashing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

from matrixlib.canonical_json import encode_canonical_json
from matrixlib.room_versions import EventFormat, RoomVersion

# -- unpadded base64 (appendices: Unpadded Base64) ------------------------------


def encode_base64(data: bytes, *, urlsafe: bool = False) -> str:
    """Unpadded base64, standard alphabet or (``urlsafe``) RFC 4648 section 5."""
    encoded = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return encoded.decode("ascii").rstrip("=")


def decode_base64(text: str) -> bytes:
    """Decodes standard or URL-safe base64, padded or not (the spec asks
    decoders to accept both). Raises ``ValueError`` on anything else."""
    if not text.isascii():
        raise ValueError("base64 must be ASCII")
    stripped = text.rstrip("=")
    if len(stripped) % 4 == 1:
        raise ValueError("impossible base64 length")
    normalised = stripped.replace("-", "+").replace("_", "/")
    normalised += "=" * (-len(normalised) % 4)
    try:
        return base64.b64decode(normalised, validate=True)
    except binascii.Error as e:
        raise ValueError(f"invalid base64: {e}") from None


# -- content hash ---------------------------------------------------------------


def _hashable_json(value: Any) -> bytes:
    return encode_canonical_json(value, strict=False)


def compute_content_hash(pdu: Mapping[str, Any]) -> bytes:
    """SHA-256 over the canonical JSON of the event without ``unsigned``,
    ``signatures`` and ``hashes``: it covers the unredacted content."""
    stripped = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes")}
    return hashlib.sha256(_hashable_json(stripped)).digest()


def check_content_hash(pdu: Mapping[str, Any]) -> bool:
    """Whether ``hashes.sha256`` matches the event. False when it is missing
    or not base64; a failed check means the receiver must use the redacted
    event (server-server-api, "Validating hashes and signatures")."""
    hashes = pdu.get("hashes")
    if not isinstance(hashes, Mapping):
        return False
    claimed = hashes.get("sha256")
    if not isinstance(claimed, str):
        return False
    try:
        claimed_bytes = decode_base64(claimed)
    except ValueError:
        return False
    return claimed_bytes == compute_content_hash(pdu)


def add_content_hash(pdu: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the event with ``hashes.sha256`` set to its content hash
    (other hash algorithms already present are kept)."""
    result = dict(pdu)
    existing = pdu.get("hashes")
    hashes = dict(existing) if isinstance(existing, Mapping) else {}
    hashes["sha256"] = encode_base64(compute_content_hash(pdu))
    result["hashes"] = hashes
    return result


# -- reference hash and IDs -----------------------------------------------------


def reference_hash(pdu: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    """SHA-256 over the canonical JSON of the redacted event without
    ``signatures`` and ``unsigned``."""
    from matrixlib.redaction import redacted_view

    redacted = redacted_view(pdu, room_version)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return hashlib.sha256(_hashable_json(redacted)).digest()


def reference_hash_base64(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """The reference hash in standard unpadded base64, the form room
    versions 1 and 2 put next to event IDs in ``prev_events``/``auth_events``."""
    return encode_base64(reference_hash(pdu, room_version))


def compute_event_id(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """The event's ID: the ``event_id`` it carries in room versions 1 and 2,
    otherwise ``$`` + its reference hash in unpadded base64 (standard
    alphabet in room version 3, URL-safe from version 4 on)."""
    if room_version.event_format is EventFormat.V1:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str):
            from matrixlib.events import EventFormatError

            raise EventFormatError("event_id is required in this room version")
        return event_id
    return event_id_of_reference_hash(reference_hash(pdu, room_version), room_version)


def event_id_of_reference_hash(digest: bytes, room_version: RoomVersion) -> str:
    """The ID of a room version 3+ event whose reference hash is ``digest``."""
    return "$" + encode_base64(digest, urlsafe=room_version.event_format is EventFormat.V3)


def compute_room_id(create_pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """The room ID a room version 12 create event makes: its event ID with
    the ``!`` sigil (rooms/v12, appendices "Room IDs")."""
    if not room_version.hydra:
        raise ValueError(f"room version {room_version.identifier} room IDs are not derived from the create event")
    return "!" + compute_event_id(create_pdu, room_version)[1:]
