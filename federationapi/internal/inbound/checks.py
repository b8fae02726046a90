"""The checks a received PDU passes before the room server sees it
(server-server-api "Checks performed on receipt of a PDU", steps 1-3):

1. it is a valid event of the room's version (shape, size, canonical JSON
   values for v6+), its event ID computed by us;
2. every server that must sign it did, with a key valid at its
   ``origin_server_ts`` (v5+), checked through the KeyRing;
3. its content hash matches; when it does not, the event goes on redacted.

The auth checks (steps 4-6) are the room server's. Nothing here does I/O
but the KeyRing's key fetches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from myelin.roomserver.v1 import events_pb2

from common.http import MAX_EVENT_BYTES
from federationapi.keyring import KeyRing, VerifyKey
from matrixlib.canonical_json import encode_canonical_json
from matrixlib.events import CREATE, Event, EventFormatError
from matrixlib.hashes import check_content_hash
from matrixlib.redaction import redact
from matrixlib.room_versions import RoomVersion
from matrixlib.signing import (
    SignatureError,
    servers_that_must_sign,
    signature_key_ids,
    verify_event_signatures,
)

logger = logging.getLogger(__name__)

# What of a remote ``unsigned`` is kept (as Synapse does): the rest is the
# sender's to claim about itself and not ours to store.
KEPT_UNSIGNED_KEYS = ("age", "invite_room_state", "knock_room_state")
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10


class PDURejected(Exception):
    """The PDU failed a check; the message is the per-PDU error answered."""


@dataclass(frozen=True)
class CheckedPDU:
    event: Event
    # The content hash did not match: ``event`` is the redacted copy.
    redacted: bool = False

    @property
    def event_id(self) -> str:
        return self.event.event_id

    def to_proto(self) -> events_pb2.Event:
        return events_pb2.Event(event_id=self.event.event_id, room_version=self.event.room_version.identifier,
                                pdu_json=self.event.to_json())


def parse_pdu(pdu: Any, room_version: RoomVersion) -> Event:
    """The PDU as an event of the room's version (ID computed by us).
    Raises ``PDURejected``."""
    if not isinstance(pdu, dict):
        raise PDURejected("the PDU is not a JSON object")
    pdu = dict(pdu)
    unsigned = pdu.get("unsigned")
    if isinstance(unsigned, dict):
        pdu["unsigned"] = {k: v for k, v in unsigned.items() if k in KEPT_UNSIGNED_KEYS}
    else:
        pdu.pop("unsigned", None)
    try:
        size = len(encode_canonical_json(pdu, strict=room_version.strict_canonical_json))
    except (ValueError, TypeError) as exc:
        raise PDURejected(f"the PDU is not valid canonical JSON: {exc}") from None
    if size > MAX_EVENT_BYTES:
        raise PDURejected(f"the PDU is {size} bytes, over the limit of {MAX_EVENT_BYTES}")
    try:
        event = Event(pdu, room_version)
        _ = event.event_id
        _ = event.room_id
    except (EventFormatError, ValueError, TypeError, KeyError) as exc:
        raise PDURejected(f"malformed PDU: {exc}") from None
    if not isinstance(pdu.get("depth"), int) or not isinstance(pdu.get("origin_server_ts"), int):
        raise PDURejected("malformed PDU: depth and origin_server_ts are required")
    # The DAG's limits (server-server-api "PDUs"; Synapse refuses the same).
    if len(event.prev_event_ids) > MAX_PREV_EVENTS:
        raise PDURejected(f"malformed PDU: more than {MAX_PREV_EVENTS} prev_events")
    if len(event.auth_event_ids) > MAX_AUTH_EVENTS:
        raise PDURejected(f"malformed PDU: more than {MAX_AUTH_EVENTS} auth_events")
    if not event.prev_event_ids and not (event.type == CREATE and event.state_key == ""):
        raise PDURejected("malformed PDU: only the create event has no prev_events")
    return event


def event_id_of(pdu: Any, room_version: RoomVersion) -> str | None:
    """The PDU's event ID when it can be computed at all (to key a per-PDU
    error), else None."""
    try:
        return parse_pdu(pdu, room_version).event_id
    except PDURejected:
        if isinstance(pdu, dict):
            try:
                return Event(pdu, room_version).event_id
            except Exception:
                return None
        return None


class TransactionKeys:
    """The KeyRing's keys as looked up for one batch of events (a
    transaction's PDUs mostly share one sender server and key), so that each
    server's keys are read once rather than once per event. A key not valid
    at an event's time (v5+) is asked of the KeyRing again, which may fetch."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self._found: dict[str, dict[str, VerifyKey]] = {}

    async def keys_for(self, server: str, key_ids: list[str], at_ts: int) -> dict[str, VerifyKey]:
        known = self._found.setdefault(server, {})
        usable = {k: known[k] for k in key_ids if k in known and known[k].valid_until_ts >= at_ts}
        if len(usable) < len(key_ids):
            found = await self.keyring.get_verify_keys(server, key_ids, at_ts)
            known.update(found)
            usable.update(found)
        return usable

    async def verify_event_signatures(self, event: Event) -> None:
        """As ``KeyRing.verify_event_signatures``. Raises ``SignatureError``."""
        at_ts = 0
        if event.room_version.enforce_key_validity:
            ts = event.pdu.get("origin_server_ts")
            at_ts = ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
        redacted = redact(event.pdu, event.room_version)
        keys = {}
        for server in servers_that_must_sign(event):
            found = await self.keys_for(server, signature_key_ids(redacted, server), at_ts)
            keys[server] = {key_id: key.key for key_id, key in found.items()}
        verify_event_signatures(event, keys)


async def check_signatures_and_hashes(keys: KeyRing | TransactionKeys, event: Event) -> CheckedPDU:
    """Steps 2 and 3. Raises ``PDURejected`` for a bad or missing signature."""
    try:
        await keys.verify_event_signatures(event)
    except (SignatureError, EventFormatError) as exc:
        raise PDURejected(f"signature check failed: {exc}") from None
    if check_content_hash(event.pdu):
        return CheckedPDU(event)
    logger.info("content hash of %s does not match: going on with the redacted event", event.event_id)
    return CheckedPDU(Event(redact(event.pdu, event.room_version), event.room_version, event.event_id),
                      redacted=True)


async def check_pdu(keys: KeyRing | TransactionKeys, pdu: Any, room_version: RoomVersion) -> CheckedPDU:
    """Steps 1 to 3 for one PDU. Raises ``PDURejected``."""
    return await check_signatures_and_hashes(keys, parse_pdu(pdu, room_version))
