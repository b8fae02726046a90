"""Room versions 1 to 12 and the rule changes each one makes.

A room version is a bundle of algorithms; the rest of the library asks the
flags here instead of comparing version strings, so a new version is one new
entry in ``KNOWN_ROOM_VERSIONS``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EventFormat(enum.Enum):
    # Event IDs are chosen by the origin server and travel in the event
    # (`$localpart:server`); auth/prev events are [id, hashes] pairs.
    V1 = 1
    # Event IDs are the reference hash, standard unpadded base64 (v3).
    V2 = 2
    # Event IDs are the reference hash, URL-safe unpadded base64 (v4+).
    V3 = 3


class StateResolution(enum.Enum):
    V1 = 1
    V2 = 2
    # State resolution v2.1 (room version 12): the conflicted state
    # subgraph is added to the full conflicted set, and resolution starts
    # from an empty state instead of the unconflicted state.
    V2_1 = 3


@dataclass(frozen=True)
class RoomVersion:
    identifier: str
    stable: bool
    event_format: EventFormat
    state_res: StateResolution
    # v5+: a server key must be valid at the event's origin_server_ts.
    enforce_key_validity: bool
    # v1-5: m.room.aliases events are authorised by their state key.
    special_case_aliases_auth: bool
    # v6+: integers out of the canonical range and floats are rejected.
    strict_canonical_json: bool
    # v6+: `notifications` in power levels is protected by the auth rules.
    limit_notifications_power_levels: bool
    # v7+: the `knock` join rule and membership.
    knock_join_rule: bool
    # v8+: the `restricted` join rule (join_authorised_via_users_server).
    restricted_join_rule: bool
    # v9+: redaction keeps join_authorised_via_users_server.
    restricted_join_rule_fix: bool
    # v10+: the `knock_restricted` join rule.
    knock_restricted_join_rule: bool
    # v10+: power level values must be integers, not strings.
    enforce_int_power_levels: bool
    # v11+: the create event has no `creator`; the sender is the creator.
    implicit_room_creator: bool
    # v11+: the redaction algorithm of room version 11.
    updated_redaction_rules: bool
    # v12+: the room ID is derived from the create event's reference hash,
    # the create event is not listed in auth_events, and the creators
    # (sender plus `additional_creators`) have infinite power.
    hydra: bool

    @property
    def uses_reference_hash_ids(self) -> bool:
        return self.event_format is not EventFormat.V1


def _version(
    identifier: str,
    event_format: EventFormat,
    state_res: StateResolution,
    since: int,
) -> RoomVersion:
    """Builds a version whose flags all follow from the version number."""
    n = since
    return RoomVersion(
        identifier=identifier,
        stable=True,
        event_format=event_format,
        state_res=state_res,
        enforce_key_validity=n >= 5,
        special_case_aliases_auth=n <= 5,
        strict_canonical_json=n >= 6,
        limit_notifications_power_levels=n >= 6,
        knock_join_rule=n >= 7,
        restricted_join_rule=n >= 8,
        restricted_join_rule_fix=n >= 9,
        knock_restricted_join_rule=n >= 10,
        enforce_int_power_levels=n >= 10,
        implicit_room_creator=n >= 11,
        updated_redaction_rules=n >= 11,
        hydra=n >= 12,
    )


KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    "1": _version("1", EventFormat.V1, StateResolution.V1, 1),
    "2": _version("2", EventFormat.V1, StateResolution.V2, 2),
    "3": _version("3", EventFormat.V2, StateResolution.V2, 3),
    "4": _version("4", EventFormat.V3, StateResolution.V2, 4),
    "5": _version("5", EventFormat.V3, StateResolution.V2, 5),
    "6": _version("6", EventFormat.V3, StateResolution.V2, 6),
    "7": _version("7", EventFormat.V3, StateResolution.V2, 7),
    "8": _version("8", EventFormat.V3, StateResolution.V2, 8),
    "9": _version("9", EventFormat.V3, StateResolution.V2, 9),
    "10": _version("10", EventFormat.V3, StateResolution.V2, 10),
    "11": _version("11", EventFormat.V3, StateResolution.V2, 11),
    "12": _version("12", EventFormat.V3, StateResolution.V2_1, 12),
}

# The spec recommends version 12 for new rooms (as Synapse 1.163 does).
DEFAULT_ROOM_VERSION = "12"


class UnknownRoomVersionError(ValueError):
    pass


def get_room_version(identifier: str) -> RoomVersion:
    try:
        return KNOWN_ROOM_VERSIONS[identifier]
    except KeyError:
        raise UnknownRoomVersionError(f"unknown room version {identifier!r}") from None
