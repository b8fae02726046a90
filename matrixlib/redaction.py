"""The redaction algorithm of room versions 1 to 12.

Spec: rooms/fragments/v1-redactions (v1-5), v6-redactions (v6, v7),
rooms/v8 (v8), v9-redactions (v9, v10), v11-redactions (v11, v12); also
client-server-api "Redactions". The differences between versions:

- v1-5 keep ``aliases`` of ``m.room.aliases``; v6 drops that.
- v8 keeps ``allow`` of ``m.room.join_rules``.
- v9 keeps ``join_authorised_via_users_server`` of ``m.room.member``.
- v11 no longer keeps the top-level ``origin``, ``membership`` and
  ``prev_state``; keeps all of an ``m.room.create`` content, ``invite`` of
  ``m.room.power_levels``, ``redacts`` of ``m.room.redaction`` and the
  ``signed`` part of an ``m.room.member``'s ``third_party_invite``.
- v12 redacts exactly as v11.

This is the server-side algorithm used for signatures, reference hashes and
storage: every top-level key not in the keep-list goes, ``unsigned``
included. Adding ``redacted_because`` for clients is the caller's business.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from matrixlib.room_versions import RoomVersion

if TYPE_CHECKING:
    from matrixlib.events import Event

_TOP_LEVEL_KEYS_V1 = frozenset({
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
    "signatures", "depth", "prev_events", "prev_state", "auth_events", "origin",
    "origin_server_ts", "membership",
})
# v11 stopped protecting origin, membership and prev_state.
_TOP_LEVEL_KEYS_V11 = _TOP_LEVEL_KEYS_V1 - {"origin", "membership", "prev_state"}

_POWER_LEVELS_KEYS = (
    "ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default",
)


def top_level_keys_kept(room_version: RoomVersion) -> frozenset[str]:
    """The top-level PDU keys a redaction in ``room_version`` keeps."""
    return _TOP_LEVEL_KEYS_V11 if room_version.updated_redaction_rules else _TOP_LEVEL_KEYS_V1


def _content_keys_kept(event_type: Any, room_version: RoomVersion) -> tuple[str, ...]:
    """The content keys kept for ``event_type``, for every type except the
    v11+ create event (which keeps all) and the v11+ member event's
    ``third_party_invite`` (handled apart)."""
    rv = room_version
    if event_type == "m.room.member":
        keys = ["membership"]
        if rv.restricted_join_rule_fix:
            keys.append("join_authorised_via_users_server")
        return tuple(keys)
    if event_type == "m.room.create":
        return ("creator",)
    if event_type == "m.room.join_rules":
        return ("join_rule", "allow") if rv.restricted_join_rule else ("join_rule",)
    if event_type == "m.room.power_levels":
        return (*_POWER_LEVELS_KEYS, "invite") if rv.updated_redaction_rules else _POWER_LEVELS_KEYS
    if event_type == "m.room.history_visibility":
        return ("history_visibility",)
    if event_type == "m.room.aliases" and rv.special_case_aliases_auth:
        # Room versions 1-5 only (the v1 redaction rules); v6 stopped it.
        return ("aliases",)
    if event_type == "m.room.redaction" and rv.updated_redaction_rules:
        return ("redacts",)
    return ()


def _same(value: Any) -> Any:
    return value


def redact_content(event_type: Any, content: Mapping[str, Any], room_version: RoomVersion,
                   *, _copy: Callable[[Any], Any] = copy.deepcopy) -> dict[str, Any]:
    """The content an event of ``event_type`` keeps when redacted."""
    if room_version.updated_redaction_rules and event_type == "m.room.create":
        return _copy(dict(content))  # type: ignore[no-any-return]
    kept = {
        key: _copy(content[key])
        for key in _content_keys_kept(event_type, room_version)
        if key in content
    }
    if room_version.updated_redaction_rules and event_type == "m.room.member":
        # v11: `third_party_invite` survives with only its `signed` part. An
        # object without `signed` becomes {} (as Synapse and Ruma do); a
        # value that is not an object is dropped.
        third_party_invite = content.get("third_party_invite")
        if isinstance(third_party_invite, Mapping):
            kept["third_party_invite"] = (
                {"signed": _copy(third_party_invite["signed"])}
                if "signed" in third_party_invite
                else {}
            )
    return kept


def redact(pdu: Mapping[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """The redacted form of ``pdu`` in ``room_version``: a new dict sharing
    nothing with the input."""
    return _redact(pdu, room_version, copy.deepcopy)


def redacted_view(pdu: Mapping[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """``redact`` without copying the values it keeps: new dicts for the
    event and its content, sharing everything below them with ``pdu``. For
    reading only (hashing, signing and verifying, which encode it once);
    copying nested values cost more than the rest of the hashing."""
    return _redact(pdu, room_version, _same)


def _redact(pdu: Mapping[str, Any], room_version: RoomVersion, copy_value: Callable[[Any], Any]
            ) -> dict[str, Any]:
    keep = top_level_keys_kept(room_version)
    redacted = {key: copy_value(value) for key, value in pdu.items() if key in keep}
    if "content" in pdu:
        content = pdu["content"]
        redacted["content"] = (
            redact_content(pdu.get("type"), content, room_version, _copy=copy_value)
            if isinstance(content, Mapping) else {}
        )
    return redacted


def redact_event(event: Event) -> Event:
    """The redacted copy of an ``Event``, with the same event ID."""
    from matrixlib.events import Event

    return Event(redact(event.pdu, event.room_version), event.room_version, event.event_id)
