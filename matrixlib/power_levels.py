"""Power levels as the authorisation rules read them.

Spec: client-server API ``m.room.power_levels`` (the defaults,
https://spec.matrix.org/v1.16/client-server-api/#mroompower_levels),
server-server API "Definitions" (required power level; invite, kick, ban and
redact levels), and the room versions' "Deprecated event content schemas"
(https://spec.matrix.org/v1.16/rooms/v1/#mroompower_levels-events-accept-values-as-strings):

* v1-9 accept integer-valued properties encoded as strings (``" +100 "``);
* v1-5 also accept floats, truncated at the decimal point (v6+ forbids
  floats anywhere in an event through canonical JSON);
* v10+ accept integers only.

Room creators: with no ``m.room.power_levels`` event the creator has 100 and
everyone else ``users_default`` (0) in v1-11; in v12 the creators (the
create event's sender plus ``additional_creators``) have an infinitely high
level whether or not there is a power levels event (``CREATOR_POWER_LEVEL``).

``PowerLevels.from_state`` is lenient: a value that does not parse is
treated as absent, so reading never fails. The auth rules use
``power_levels_content_problems`` to refuse such events in the first place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from matrixlib import ids
from matrixlib.events import CREATE, POWER_LEVELS, Event, StateKey
from matrixlib.room_versions import RoomVersion

# The level of a room creator in room version 12+: above every integer, so
# creators outrank everybody and equal each other (neither can kick the other).
CREATOR_POWER_LEVEL: Final[float] = math.inf

# What the properties default to when the power levels event (or the
# property) is absent.
DEFAULT_USERS_DEFAULT: Final = 0
DEFAULT_EVENTS_DEFAULT: Final = 0
DEFAULT_STATE_DEFAULT: Final = 50
DEFAULT_BAN: Final = 50
DEFAULT_KICK: Final = 50
DEFAULT_REDACT: Final = 50
DEFAULT_INVITE: Final = 0
DEFAULT_NOTIFICATION_LEVEL: Final = 50
# v1-11 with no power levels event in the room.
CREATOR_LEVEL_WITHOUT_POWER_LEVELS: Final = 100

# The integer-valued top-level properties the auth rules compare.
NAMED_LEVELS: Final = ("users_default", "events_default", "state_default",
                       "ban", "redact", "kick", "invite")
_NAMED_DEFAULTS: Final[dict[str, int]] = {
    "users_default": DEFAULT_USERS_DEFAULT,
    "events_default": DEFAULT_EVENTS_DEFAULT,
    "state_default": DEFAULT_STATE_DEFAULT,
    "ban": DEFAULT_BAN,
    "redact": DEFAULT_REDACT,
    "kick": DEFAULT_KICK,
    "invite": DEFAULT_INVITE,
}

# v1-9 "stringy" power levels: optional surrounding whitespace, an optional
# sign, base-10 digits (leading zeroes allowed). Python's int() alone would
# also take underscores and non-ASCII digits.
_STRINGY_INT = re.compile(r"[ \t\n\r\f\v]*[+-]?[0-9]+[ \t\n\r\f\v]*", re.ASCII)

def is_valid_user_id(user_id: object) -> bool:
    """Whether ``user_id`` is a user ID the auth rules accept (historical
    localparts included, appendices "Historical User IDs")."""
    return isinstance(user_id, str) and ids.is_valid_user_id(user_id)


def parse_power_level(value: object, room_version: RoomVersion) -> int | None:
    """The integer a power level value stands for, or None if this room
    version does not accept it as one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if room_version.enforce_int_power_levels:
        return None
    if isinstance(value, str):
        return int(value) if _STRINGY_INT.fullmatch(value) else None
    if isinstance(value, float) and not room_version.strict_canonical_json:
        # v1-5: truncate at the decimal point; infinities and NaN are refused.
        return int(value) if math.isfinite(value) else None
    return None


def power_levels_content_problems(content: Mapping[str, Any], room_version: RoomVersion) -> list[str]:
    """Why a power levels event's content is malformed for this room
    version (empty if it is well formed).

    v10+ (rules 10.1-10.3 of v12): the named levels integers, ``events``
    and ``notifications`` objects of integers, ``users`` an object of valid
    user IDs to integers. v1-9 name only ``users`` (integers or integer
    strings); as Dendrite does, the other levels must parse too, because a
    level nobody can read cannot be enforced (Synapse fails on them later).
    """
    problems: list[str] = []
    for name in NAMED_LEVELS:
        if name in content and parse_power_level(content[name], room_version) is None:
            problems.append(f"{name} is not an integer")
    for name in ("events", "notifications"):
        if name not in content:
            continue
        levels = content[name]
        if not isinstance(levels, dict):
            problems.append(f"{name} is not an object")
            continue
        for key, value in levels.items():
            if parse_power_level(value, room_version) is None:
                problems.append(f"{name}[{key!r}] is not an integer")
    if "users" in content:
        users = content["users"]
        if not isinstance(users, dict):
            problems.append("users is not an object")
        else:
            for user_id, value in users.items():
                if not is_valid_user_id(user_id):
                    problems.append(f"users key {user_id!r} is not a valid user ID")
                elif parse_power_level(value, room_version) is None:
                    problems.append(f"users[{user_id!r}] is not an integer")
    return problems


def room_creators(create_event: Event) -> frozenset[str]:
    """The room's creators.

    v1-10: ``content.creator``; v11: the create event's sender; v12: the
    sender plus the strings in ``content.additional_creators``.
    """
    room_version = create_event.room_version
    if not room_version.implicit_room_creator:
        creator = create_event.content.get("creator")
        return frozenset([creator]) if isinstance(creator, str) else frozenset()
    creators = {create_event.sender}
    if room_version.hydra:
        additional = create_event.content.get("additional_creators")
        if isinstance(additional, list):
            creators.update(user_id for user_id in additional if isinstance(user_id, str))
    return frozenset(creators)


def is_creator(user_id: str, create_event: Event) -> bool:
    """Whether ``user_id`` is a creator of the room ``create_event`` creates."""
    return user_id in room_creators(create_event)


def _int_map(value: object, room_version: RoomVersion) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    levels: dict[str, int] = {}
    for key, raw in value.items():
        parsed = parse_power_level(raw, room_version)
        if isinstance(key, str) and parsed is not None:
            levels[key] = parsed
    return levels


#: The levels parsed lately from a power levels event (and create event),
#: by the events' identity: every auth check of every event in a room parses
#: the same one (events are immutable). The events are held, so their
#: ``id`` is not reused while an entry stands.
_FROM_EVENTS_KEPT = 64
_from_events: dict[tuple[int, int, str], tuple[Event, Event | None, PowerLevels]] = {}


@dataclass(frozen=True)
class PowerLevels:
    """The effective power levels of a room at one point."""

    room_version: RoomVersion
    # Whether the room has an m.room.power_levels event at all.
    has_power_levels_event: bool
    users: Mapping[str, int] = field(default_factory=dict)
    users_default: int = DEFAULT_USERS_DEFAULT
    events: Mapping[str, int] = field(default_factory=dict)
    events_default: int = DEFAULT_EVENTS_DEFAULT
    state_default: int = DEFAULT_STATE_DEFAULT
    ban: int = DEFAULT_BAN
    kick: int = DEFAULT_KICK
    redact: int = DEFAULT_REDACT
    invite: int = DEFAULT_INVITE
    notifications: Mapping[str, int] = field(default_factory=dict)
    # v12: users with infinite power. v1-11: empty.
    creators: frozenset[str] = frozenset()
    # v1-11 without a power levels event: the creator, who has 100.
    creator_without_power_levels: frozenset[str] = frozenset()

    @classmethod
    def from_state(
        cls,
        auth_state_or_event: Mapping[StateKey, Event] | Event | None,
        room_version: RoomVersion,
        *,
        create_event: Event | None = None,
    ) -> PowerLevels:
        """The power levels given by a room state (``m.room.create`` and
        ``m.room.power_levels`` are read from it), or by a power levels
        event (pass ``create_event`` too, for the creators).

        ``None`` (or a state without a power levels event) gives the levels
        of a room without one.
        """
        if isinstance(auth_state_or_event, Event):
            power_levels_event: Event | None = auth_state_or_event
        elif auth_state_or_event is None:
            power_levels_event = None
        else:
            power_levels_event = auth_state_or_event.get((POWER_LEVELS, ""))
            if create_event is None:
                create_event = auth_state_or_event.get((CREATE, ""))

        creators = room_creators(create_event) if create_event is not None else frozenset()
        infinite = creators if room_version.hydra else frozenset[str]()
        if power_levels_event is None:
            return cls(
                room_version=room_version,
                has_power_levels_event=False,
                creators=infinite,
                creator_without_power_levels=frozenset() if room_version.hydra else creators,
            )

        key = (id(power_levels_event), id(create_event), room_version.identifier)
        known = _from_events.get(key)
        if known is not None and known[0] is power_levels_event and known[1] is create_event:
            return known[2]
        content = power_levels_event.content

        def named(name: str) -> int:
            parsed = parse_power_level(content.get(name), room_version)
            return parsed if parsed is not None else _NAMED_DEFAULTS[name]

        levels = cls(
            room_version=room_version,
            has_power_levels_event=True,
            users=_int_map(content.get("users"), room_version),
            users_default=named("users_default"),
            events=_int_map(content.get("events"), room_version),
            events_default=named("events_default"),
            state_default=named("state_default"),
            ban=named("ban"),
            kick=named("kick"),
            redact=named("redact"),
            invite=named("invite"),
            notifications=_int_map(content.get("notifications"), room_version),
            creators=infinite,
        )
        if len(_from_events) >= _FROM_EVENTS_KEPT:
            _from_events.pop(next(iter(_from_events)))
        _from_events[key] = (power_levels_event, create_event, levels)
        return levels

    def user_level(self, user_id: str) -> float:
        """The user's power level: an int, or ``CREATOR_POWER_LEVEL``
        (infinity) for a v12 creator."""
        if user_id in self.creators:
            return CREATOR_POWER_LEVEL
        if not self.has_power_levels_event and user_id in self.creator_without_power_levels:
            return CREATOR_LEVEL_WITHOUT_POWER_LEVELS
        return self.users.get(user_id, self.users_default)

    def events_level(self, event_type: str, is_state: bool) -> int:
        """The *required power level* to send an event of this type."""
        if event_type in self.events:
            return self.events[event_type]
        return self.state_default if is_state else self.events_default

    def notification_level(self, key: str) -> int:
        """The level needed to trigger a notification of this kind (``room``:
        an @room mention)."""
        return self.notifications.get(key, DEFAULT_NOTIFICATION_LEVEL)
