"""The authorisation rules of room versions 1 to 12.

Spec: rooms/v1.md ... v12.md "Authorisation rules" (and the fragments
v1-auth-rules, v3-auth-rules, v8-auth-rules), server-server API "Auth events
selection" and "Checks performed on receipt of a PDU":
https://spec.matrix.org/v1.16/rooms/v12/#authorization-rules (and v1 ... v11),
https://spec.matrix.org/v1.16/server-server-api/#auth-events-selection

An event is checked in two parts:

* ``check_auth_events_list(event, auth_events)``: the ``auth_events`` the
  event lists (v12 rule 3, v1-11 rule 2): no two for one (type, state_key),
  nothing the auth events selection would not pick, no rejected ones, all
  from the event's room, the create event among them (v1-11) or not (v12).
* ``check_auth_rules(event, auth_state)``: every other rule, against a state
  (built from the auth events, the state before the event, or the current
  state; checks 4, 5 and 6 on receipt of a PDU). The state always holds the
  create event under ("m.room.create", ""), in v12 as well, where the
  caller finds it through the room ID.

Both raise ``AuthError``. The rules are numbered differently in each
version (v1-5 have the ``m.room.aliases`` rule, v12 an extra rule 2), so the
messages name the rule by what it checks, not by its number.

What the auth rules ask and this module cannot answer without keys:

* v8+ "If content has join_authorised_via_users_server, the event must be
  validly signed by that user's server": here the event must carry a
  signature of that server; verifying it is the signature check's job
  (which must require that server's signature for such events). A server
  that authorises a restricted join must sign the event before checking it.
* "entries which were themselves rejected": the caller passes the IDs it
  rejected to ``check_auth_events_list``.

The signature of a third-party invite's ``signed`` object is verified here:
the keys are in the ``m.room.third_party_invite`` event.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json

from matrixlib.events import (
    ALIASES,
    CREATE,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    REDACTION,
    THIRD_PARTY_INVITE,
    Event,
    StateKey,
)
from matrixlib.power_levels import (
    PowerLevels,
    is_valid_user_id,
    parse_power_level,
    power_levels_content_problems,
    room_creators,
)
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

__all__ = [
    "AuthError",
    "StateKey",
    "auth_state_from_auth_events",
    "auth_types_for_event",
    "check_auth_events_list",
    "check_auth_rules",
]

# Memberships and join rules.
JOIN = "join"
INVITE = "invite"
LEAVE = "leave"
BAN = "ban"
KNOCK = "knock"
PUBLIC = "public"
RESTRICTED = "restricted"
KNOCK_RESTRICTED = "knock_restricted"

JOIN_AUTHORISED_VIA = "join_authorised_via_users_server"


class AuthError(Exception):
    """The event is not authorised; the message says which rule failed."""


# -- auth events selection ----------------------------------------------------


def auth_types_for_event(event: Event) -> list[StateKey]:
    """The state an event's ``auth_events`` must be drawn from (server-server
    API, "Auth events selection"), without duplicates.

    Empty for a create event. Malformed content (a third-party invite
    without a token, say) adds nothing rather than failing: the auth rules
    reject such events with a better reason.
    """
    if event.type == CREATE:
        return []
    version = event.room_version
    wanted: list[StateKey] = []
    if not version.hydra:
        # v12: the room ID names the create event, which is not listed.
        wanted.append((CREATE, ""))
    wanted.append((POWER_LEVELS, ""))
    wanted.append((MEMBER, event.sender))
    if event.type == MEMBER:
        membership = event.membership
        if event.state_key is not None:
            wanted.append((MEMBER, event.state_key))
        if membership in (JOIN, INVITE, KNOCK):
            wanted.append((JOIN_RULES, ""))
        if membership == INVITE:
            token = _third_party_invite_token(event.content)
            if token is not None:
                wanted.append((THIRD_PARTY_INVITE, token))
        if membership == JOIN and version.restricted_join_rule:
            authoriser = event.content.get(JOIN_AUTHORISED_VIA)
            if isinstance(authoriser, str):
                wanted.append((MEMBER, authoriser))
    return list(dict.fromkeys(wanted))


def _third_party_invite_token(content: Mapping[str, Any]) -> str | None:
    invite = content.get("third_party_invite")
    signed = invite.get("signed") if isinstance(invite, dict) else None
    token = signed.get("token") if isinstance(signed, dict) else None
    return token if isinstance(token, str) else None


def check_auth_events_list(
    event: Event,
    auth_events: Sequence[Event],
    *,
    rejected_event_ids: Collection[str] = (),
) -> None:
    """The rules about the event's ``auth_events`` themselves.

    ``auth_events`` are the events ``event.auth_event_ids`` names, fetched
    by the caller; ``rejected_event_ids`` the ones among them it rejected.
    A create event has no such rules (its own rules decide it).
    """
    if event.type == CREATE:
        return
    version = event.room_version
    listed = event.auth_event_ids
    given = {auth_event.event_id for auth_event in auth_events}
    if len(set(listed)) != len(listed):
        raise AuthError("auth_events lists an event twice")
    if given != set(listed):
        missing = sorted(set(listed) - given)
        extra = sorted(given - set(listed))
        raise AuthError(
            f"the auth events given are not the ones the event lists (missing {missing}, not listed {extra})")

    allowed = set(auth_types_for_event(event))
    seen: set[StateKey] = set()
    for auth_event in auth_events:
        if auth_event.state_key is None:
            raise AuthError(f"auth event {auth_event.event_id} is not a state event")
        key = auth_event.state_tuple
        if key in seen:
            raise AuthError(f"auth_events has two entries for {key}")
        seen.add(key)
    for auth_event in auth_events:
        key = auth_event.state_tuple
        if key not in allowed:
            if key == (CREATE, "") and version.hydra:
                raise AuthError("the create event must not be listed in auth_events in this room version")
            raise AuthError(f"auth event {auth_event.event_id} for {key} is not one the auth events "
                            "selection picks for this event")
        if auth_event.event_id in rejected_event_ids:
            raise AuthError(f"auth event {auth_event.event_id} was rejected")
    if not version.hydra and (CREATE, "") not in seen:
        raise AuthError("there is no m.room.create event among the auth events")
    for auth_event in auth_events:
        if auth_event.room_id != event.room_id:
            raise AuthError(f"auth event {auth_event.event_id} is in room {auth_event.room_id}, "
                            f"not {event.room_id}")


def auth_state_from_auth_events(
    auth_events: Iterable[Event], create_event: Event | None = None
) -> dict[StateKey, Event]:
    """The state map ``check_auth_rules`` takes, from an event's auth
    events. In v12 pass the create event the room ID names."""
    state = {auth_event.state_tuple: auth_event for auth_event in auth_events
             if auth_event.state_key is not None}
    if create_event is not None:
        state[(CREATE, "")] = create_event
    return state


# -- the rules ----------------------------------------------------------------


def check_auth_rules(event: Event, auth_state: Mapping[StateKey, Event]) -> None:
    """Raises ``AuthError`` unless the auth rules of the event's room version
    allow ``event`` given ``auth_state``.

    ``auth_state`` must hold the create event (unless ``event`` is it), the
    power levels, the sender's and target's memberships, the join rules and
    any third-party invite or authorising user's membership the event
    refers to; other entries are ignored.
    """
    if event.type == CREATE:
        _check_create(event)
        return
    _RuleCheck(event, auth_state).run()


def _domain(identifier: str) -> str:
    """The server name of a ``&localpart:domain`` identifier."""
    return identifier.split(":", 1)[1] if ":" in identifier else ""


def _check_create(event: Event) -> None:
    version = event.room_version
    if event.prev_event_ids:
        raise AuthError("the create event has prev_events")
    if version.hydra:
        if "room_id" in event.pdu:
            raise AuthError("the create event has a room_id; in this room version the room ID is "
                            "derived from the create event's ID")
    elif _domain(event.room_id) != _domain(event.sender):
        raise AuthError("the domain of the create event's room_id does not match its sender's")
    if "room_version" in event.content and event.content["room_version"] not in KNOWN_ROOM_VERSIONS:
        raise AuthError(f"unknown room version {event.content['room_version']!r} in the create event")
    if not version.implicit_room_creator and "creator" not in event.content:
        raise AuthError("the create event has no creator")
    if version.hydra and "additional_creators" in event.content:
        additional = event.content["additional_creators"]
        if not isinstance(additional, list) or not all(is_valid_user_id(u) for u in additional):
            raise AuthError("additional_creators is not an array of valid user IDs")


class _RuleCheck:
    """The rules after the create event's, for one event and one state."""

    def __init__(self, event: Event, auth_state: Mapping[StateKey, Event]) -> None:
        self.event = event
        self.state = auth_state
        self.version: RoomVersion = event.room_version
        create = auth_state.get((CREATE, ""))
        if create is None:
            raise AuthError("no m.room.create event in the auth state")
        self.create = create
        self.power = PowerLevels.from_state(auth_state, self.version, create_event=create)

    def membership_of(self, user_id: str) -> str | None:
        member = self.state.get((MEMBER, user_id))
        return member.membership if member is not None else None

    @property
    def join_rule(self) -> str | None:
        join_rules = self.state.get((JOIN_RULES, ""))
        if join_rules is None:
            # A room without join rules is invite-only (as in Synapse and
            # Dendrite; the spec does not say).
            return INVITE
        rule = join_rules.content.get("join_rule")
        return rule if isinstance(rule, str) else None

    def run(self) -> None:
        event = self.event
        version = self.version
        # v12 rule 2: the room ID is the create event's ID with `!` for `$`
        # (checked in every version: the state must be this room's).
        if self.create.room_id != event.room_id:
            raise AuthError(f"the create event in the auth state is for room {self.create.room_id}, "
                            f"not {event.room_id}")
        if self.create.content.get("m.federate", True) is False \
                and _domain(event.sender) != _domain(self.create.sender):
            raise AuthError("the room is not federated (m.federate is false) and the sender is "
                            "on another server than the creator")
        if event.type == ALIASES and version.special_case_aliases_auth:
            if event.state_key is None:
                raise AuthError("an m.room.aliases event has no state_key")
            if event.state_key != _domain(event.sender):
                raise AuthError("an m.room.aliases event's state_key is not the sender's domain")
            return
        if event.type == MEMBER:
            self.check_membership()
            return
        if self.membership_of(event.sender) != JOIN:
            raise AuthError(f"the sender {event.sender} is not joined to the room")
        sender_level = self.power.user_level(event.sender)
        if event.type == THIRD_PARTY_INVITE:
            if sender_level < self.power.invite:
                raise AuthError("the sender's power level is below the invite level, needed for "
                                "m.room.third_party_invite")
            return
        required = self.power.events_level(event.type, event.is_state())
        if required > sender_level:
            raise AuthError(f"the sender's power level {sender_level} is below the {required} "
                            f"required for {event.type}")
        if event.state_key is not None and event.state_key.startswith("@") \
                and event.state_key != event.sender:
            raise AuthError("the state_key is a user ID that is not the sender")
        if event.type == POWER_LEVELS:
            self.check_power_levels()
            return
        if event.type == REDACTION and not version.uses_reference_hash_ids:
            self.check_v1_redaction()

    # -- m.room.member ------------------------------------------------------

    def check_membership(self) -> None:
        event = self.event
        version = self.version
        target = event.state_key
        membership = event.membership
        if target is None or "membership" not in event.content:
            raise AuthError("an m.room.member event has no state_key or no membership")
        if version.restricted_join_rule and JOIN_AUTHORISED_VIA in event.content:
            authoriser = event.content[JOIN_AUTHORISED_VIA]
            if not isinstance(authoriser, str) or _domain(authoriser) not in event.signatures:
                raise AuthError(f"{JOIN_AUTHORISED_VIA} is set but the event is not signed by that "
                                "user's server")
        if membership == JOIN:
            self.check_join(target)
        elif membership == INVITE:
            self.check_invite(target)
        elif membership == LEAVE:
            self.check_leave(target)
        elif membership == BAN:
            self.check_ban(target)
        elif membership == KNOCK and version.knock_join_rule:
            self.check_knock(target)
        else:
            raise AuthError(f"unknown membership {membership!r}")

    def check_join(self, target: str) -> None:
        event = self.event
        version = self.version
        # Only the room's first join: the creator (v1-10 content.creator,
        # v11+ the create event's sender; not v12's additional creators).
        if event.prev_event_ids == [self.create.event_id]:
            if version.implicit_room_creator:
                first_member: object = self.create.sender
            else:
                first_member = self.create.content.get("creator")
            if target == first_member:
                return
        if event.sender != target:
            raise AuthError("a join's sender is not its state_key")
        current = self.membership_of(event.sender)
        if current == BAN:
            raise AuthError(f"{event.sender} is banned from the room")
        join_rule = self.join_rule
        if join_rule == INVITE or (join_rule == KNOCK and version.knock_join_rule):
            if current in (INVITE, JOIN):
                return
            raise AuthError(f"the room is {join_rule}-only and {event.sender} is not invited")
        if (join_rule == RESTRICTED and version.restricted_join_rule) or \
                (join_rule == KNOCK_RESTRICTED and version.knock_restricted_join_rule):
            if current in (INVITE, JOIN):
                return
            authoriser = event.content.get(JOIN_AUTHORISED_VIA)
            if not isinstance(authoriser, str):
                raise AuthError(f"a join to a {join_rule} room without invite has no {JOIN_AUTHORISED_VIA}")
            if self.power.user_level(authoriser) < self.power.invite:
                raise AuthError(f"{JOIN_AUTHORISED_VIA} {authoriser} may not invite users")
            if self.membership_of(authoriser) != JOIN:
                raise AuthError(f"{JOIN_AUTHORISED_VIA} {authoriser} is not joined to the room")
            return
        if join_rule == PUBLIC:
            return
        raise AuthError(f"join rule {join_rule!r} does not allow {event.sender} to join")

    def check_invite(self, target: str) -> None:
        event = self.event
        if "third_party_invite" in event.content:
            if self.membership_of(target) == BAN:
                raise AuthError(f"the invited user {target} is banned")
            self.check_third_party_invite(target)
            return
        if self.membership_of(event.sender) != JOIN:
            raise AuthError(f"the inviter {event.sender} is not joined to the room")
        if self.membership_of(target) in (JOIN, BAN):
            raise AuthError(f"{target} cannot be invited: their membership is {self.membership_of(target)!r}")
        if self.power.user_level(event.sender) < self.power.invite:
            raise AuthError("the sender's power level is below the invite level")

    def check_third_party_invite(self, target: str) -> None:
        event = self.event
        third_party_invite = event.content["third_party_invite"]
        signed = third_party_invite.get("signed") if isinstance(third_party_invite, dict) else None
        if not isinstance(signed, dict):
            raise AuthError("third_party_invite has no signed object")
        if "mxid" not in signed or "token" not in signed:
            raise AuthError("third_party_invite.signed has no mxid or no token")
        if signed["mxid"] != target:
            raise AuthError("third_party_invite.signed.mxid is not the invited user")
        token = signed["token"]
        invite_event = self.state.get((THIRD_PARTY_INVITE, token)) if isinstance(token, str) else None
        if invite_event is None:
            raise AuthError("no m.room.third_party_invite event for the token")
        if invite_event.sender != event.sender:
            raise AuthError("the sender did not send the m.room.third_party_invite event")
        if not _signed_by_any(signed, _third_party_public_keys(invite_event.content)):
            raise AuthError("third_party_invite.signed is not signed by any of the invite's public keys")

    def check_leave(self, target: str) -> None:
        event = self.event
        if event.sender == target:
            allowed = (INVITE, JOIN, KNOCK) if self.version.knock_join_rule else (INVITE, JOIN)
            if self.membership_of(target) in allowed:
                return
            raise AuthError(f"{target} cannot leave: their membership is {self.membership_of(target)!r}")
        if self.membership_of(event.sender) != JOIN:
            raise AuthError(f"the sender {event.sender} is not joined to the room")
        sender_level = self.power.user_level(event.sender)
        if self.membership_of(target) == BAN and sender_level < self.power.ban:
            raise AuthError("the sender's power level is below the ban level, needed to unban")
        if sender_level >= self.power.kick and self.power.user_level(target) < sender_level:
            return
        raise AuthError("the sender's power level is below the kick level or not above the target's")

    def check_ban(self, target: str) -> None:
        event = self.event
        if self.membership_of(event.sender) != JOIN:
            raise AuthError(f"the sender {event.sender} is not joined to the room")
        sender_level = self.power.user_level(event.sender)
        if sender_level >= self.power.ban and self.power.user_level(target) < sender_level:
            return
        raise AuthError("the sender's power level is below the ban level or not above the target's")

    def check_knock(self, target: str) -> None:
        event = self.event
        allowed_rules = (KNOCK, KNOCK_RESTRICTED) if self.version.knock_restricted_join_rule else (KNOCK,)
        if self.join_rule not in allowed_rules:
            raise AuthError(f"join rule {self.join_rule!r} does not allow knocking")
        if event.sender != target:
            raise AuthError("a knock's sender is not its state_key")
        if self.membership_of(event.sender) in (BAN, INVITE, JOIN):
            raise AuthError(f"{event.sender} cannot knock: their membership is "
                            f"{self.membership_of(event.sender)!r}")

    # -- m.room.power_levels ------------------------------------------------

    def check_power_levels(self) -> None:
        event = self.event
        version = self.version
        content = event.content
        problems = power_levels_content_problems(content, version)
        if problems:
            raise AuthError("malformed power levels: " + "; ".join(problems))
        if version.hydra:
            creators = room_creators(self.create)
            listed = sorted(creators & set(content.get("users", {})))
            if listed:
                raise AuthError(f"the users of a power levels event must not include the room's creators {listed}")
        previous = self.state.get((POWER_LEVELS, ""))
        if previous is None:
            return
        sender_level = self.power.user_level(event.sender)
        old = previous.content

        for name in ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"):
            old_level = self.level_in(old, name)
            new_level = self.level_in(content, name)
            if old_level == new_level:
                continue
            if old_level is not None and old_level > sender_level:
                raise AuthError(f"{name} is {old_level}, above the sender's power level")
            if new_level is not None and new_level > sender_level:
                raise AuthError(f"{name} would be {new_level}, above the sender's power level")

        maps = ["events", "notifications"] if version.limit_notifications_power_levels else ["events"]
        for map_name in maps:
            old_map = self.map_in(old, map_name)
            new_map = self.map_in(content, map_name)
            for key in old_map.keys() | new_map.keys():
                old_level = old_map.get(key)
                new_level = new_map.get(key)
                if old_level == new_level:
                    continue
                if old_level is not None and old_level > sender_level:
                    raise AuthError(f"{map_name}[{key!r}] is {old_level}, above the sender's power level")
                if new_level is not None and new_level > sender_level:
                    raise AuthError(f"{map_name}[{key!r}] would be {new_level}, above the sender's power level")

        old_users = self.map_in(old, "users")
        new_users = self.map_in(content, "users")
        for user_id in old_users.keys() | new_users.keys():
            old_level = old_users.get(user_id)
            new_level = new_users.get(user_id)
            if old_level == new_level:
                continue
            if user_id != event.sender and old_level is not None and old_level >= sender_level:
                raise AuthError(f"cannot change the level of {user_id}, who has {old_level}, not less "
                                "than the sender")
            if new_level is not None and new_level > sender_level:
                raise AuthError(f"cannot give {user_id} {new_level}, above the sender's power level")

    def level_in(self, content: Mapping[str, Any], name: str) -> int | None:
        return parse_power_level(content[name], self.version) if name in content else None

    def map_in(self, content: Mapping[str, Any], name: str) -> dict[str, int]:
        levels = content.get(name)
        if not isinstance(levels, dict):
            return {}
        parsed = {key: parse_power_level(value, self.version) for key, value in levels.items()}
        return {key: value for key, value in parsed.items() if value is not None}

    # -- m.room.redaction (v1, v2) ------------------------------------------

    def check_v1_redaction(self) -> None:
        """v1-2 rule 11. From v3 on, a redaction needs only the power to send
        it; whether it is applied is decided when it is handled."""
        event = self.event
        if self.power.user_level(event.sender) >= self.power.redact:
            return
        redacts = event.redacts
        if redacts is not None and _domain(redacts) == _domain(event.event_id):
            return
        raise AuthError("the sender's power level is below the redact level and the redacted event "
                        "is from another server")


# -- third-party invite signatures ----------------------------------------------


def _third_party_public_keys(content: Mapping[str, Any]) -> list[str]:
    keys: list[str] = []
    if isinstance(content.get("public_key"), str):
        keys.append(content["public_key"])
    listed = content.get("public_keys")
    if isinstance(listed, list):
        for entry in listed:
            if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
                keys.append(entry["public_key"])
    return keys


def _decode_base64(value: str) -> bytes | None:
    """Unpadded base64, standard or URL-safe (identity servers use both)."""
    padded = value + "=" * (-len(value) % 4)
    altchars = b"-_" if ("-" in value or "_" in value) else None
    try:
        return base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None


def _signed_by_any(signed: Mapping[str, Any], public_keys: Sequence[str]) -> bool:
    """Whether any ed25519 signature in ``signed`` verifies with any of the
    public keys."""
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        return False
    for public_key in public_keys:
        key_bytes = _decode_base64(public_key)
        if key_bytes is None or len(key_bytes) != 32:
            continue
        for server_name, server_signatures in signatures.items():
            if not isinstance(server_signatures, dict):
                continue
            for key_id in server_signatures:
                if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                    continue
                try:
                    verify_key = decode_verify_key_bytes(key_id, key_bytes)
                    verify_signed_json(dict(signed), server_name, verify_key)
                except (SignatureVerifyException, ValueError, TypeError, KeyError):
                    continue
                return True
    return False
