"""Building new local events against a room's current state.

Every writer (the client API now, the federation API for make_join and
friends later) builds events the same way: ask the room server for the
forward extremities, the depth and the state the auth events selection
needs, then hash and sign with ``matrixlib.builder``.

``build_room_creation_events`` builds the whole initial chain of a new room
(create, the creator's join, power levels, presets, initial state, name,
topic) locally, each event's auth events taken from the chain built so far,
so ``/createRoom`` inputs them in one call instead of one query and one
input per event. Each event is also checked against the auth rules here, so
a request that cannot work (an ``initial_state`` event the creator may not
send) fails before anything reaches the room server.

Spec: client-server API "Creation" and data/api/client-server/create_room.yaml;
server-server API "Auth events selection"; rooms/v12.md (room IDs derived
from the create event, creators not listed in power levels).
"""

from __future__ import annotations

import secrets
import string
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from myelin.roomserver.v1 import events_pb2, roomserver_pb2

from common import errors
from matrixlib import events as ev
from matrixlib.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from matrixlib.builder import build_event
from matrixlib.events import Event, StateKey
from matrixlib.hashes import reference_hash_base64
from matrixlib.ids import is_valid_user_id
from matrixlib.room_versions import EventFormat, RoomVersion, get_room_version
from matrixlib.signing import SigningKey
from roomserver.api import StateQueryAPI

# The spec's limit on a whole PDU, signatures and hashes included.
MAX_PDU_BYTES = 65536
# type, state_key, sender and room_id each.
MAX_ID_FIELD_BYTES = 255
# More prev events than this make events large for little gain; the rest of
# the extremities are merged by later events.
MAX_PREV_EVENTS = 10

PRESET_PRIVATE = "private_chat"
PRESET_TRUSTED_PRIVATE = "trusted_private_chat"
PRESET_PUBLIC = "public_chat"
PRESETS = (PRESET_PRIVATE, PRESET_TRUSTED_PRIVATE, PRESET_PUBLIC)

GUEST_ACCESS = "m.room.guest_access"
ROOM_ID_CHARS = string.ascii_letters

# The room state events a new event's auth events are picked from come with
# every build (the same few each time in a room): parsed once, kept by their
# exact JSON (a redacted copy is another entry). Events are immutable; a
# parsed event takes ~3.5 KB, so a few per active room.
_PARSED_STATE_SIZE = 512
_parsed_state: OrderedDict[tuple[str, str, bytes], Event] = OrderedDict()


def _state_event(proto: events_pb2.Event, room_version: RoomVersion) -> Event:
    key = (room_version.identifier, proto.event_id, proto.pdu_json)
    event = _parsed_state.get(key)
    if event is None:
        event = Event.from_json(proto.pdu_json, room_version, proto.event_id or None)
        _parsed_state[key] = event
        while len(_parsed_state) > _PARSED_STATE_SIZE:
            _parsed_state.popitem(last=False)
    else:
        _parsed_state.move_to_end(key)
    return event


def _now_ms() -> int:
    return int(time.time() * 1000)


def _provisional(room_version: RoomVersion, room_id: str | None, type: str, sender: str,
                 content: Mapping[str, Any], state_key: str | None) -> Event:
    """An unsigned stand-in with the fields the auth events selection reads."""
    pdu: dict[str, Any] = {"type": type, "sender": sender, "content": dict(content)}
    if room_id is not None:
        pdu["room_id"] = room_id
    if state_key is not None:
        pdu["state_key"] = state_key
    event_id = "$provisional:invalid" if room_version.event_format is EventFormat.V1 else None
    try:
        return Event(pdu, room_version, event_id)
    except ValueError as e:
        raise errors.BadJSON(str(e)) from None


def check_pdu_size(event: Event) -> None:
    """M_TOO_LARGE for an event over the spec's 65,536 bytes."""
    size = len(event.to_json())
    if size > MAX_PDU_BYTES:
        raise errors.TooLarge(f"event is {size} bytes, over the limit of {MAX_PDU_BYTES}")


def _check_id_sizes(type: str, state_key: str | None) -> None:
    """The PDU limits on single fields (server-server API "PDUs"); like
    Synapse, 413 M_TOO_LARGE."""
    if len(type.encode("utf-8")) > MAX_ID_FIELD_BYTES:
        raise errors.TooLarge(f"event type is over {MAX_ID_FIELD_BYTES} bytes")
    if state_key is not None and len(state_key.encode("utf-8")) > MAX_ID_FIELD_BYTES:
        raise errors.TooLarge(f"state_key is over {MAX_ID_FIELD_BYTES} bytes")


def _build(room_version: RoomVersion, **kwargs: Any) -> Event:
    _check_id_sizes(kwargs["type"], kwargs.get("state_key"))
    try:
        event = build_event(room_version, **kwargs)
    except ValueError as e:
        # A float or an out-of-range integer in the content, for example.
        raise errors.BadJSON(f"cannot build the event: {e}") from None
    check_pdu_size(event)
    return event


async def build_local_event(
    roomserver: StateQueryAPI,
    *,
    room_id: str,
    type: str,
    sender: str,
    content: Mapping[str, Any],
    state_key: str | None = None,
    server_name: str,
    signing_key: SigningKey,
    redacts: str | None = None,
    now_ms: int | None = None,
) -> Event:
    """A new event in ``room_id`` on top of the room's forward extremities,
    with the auth events the current state gives. NotFound when the room
    server does not know the room. The event is not authorised here: the
    room server does that when it is input."""
    # The version is unknown until the room server answers; the auth types
    # differ between versions only in details that asking too much covers
    # (the create event, which the builder drops in v12).
    wanted = auth_types_for_event(
        _provisional(get_room_version("10"), room_id, type, sender, content, state_key))
    answer = await roomserver.query_latest_events_and_state(roomserver_pb2.QueryLatestEventsAndStateRequest(
        room_id=room_id,
        state_to_fetch=[events_pb2.StateKeyTuple(event_type=t, state_key=k) for t, k in wanted]))
    if not answer.room_exists:
        raise errors.NotFound(f"Unknown room {room_id}")
    try:
        room_version = get_room_version(answer.room_version)
    except ValueError:
        raise errors.MatrixError(f"room {room_id} has unsupported version {answer.room_version!r}") from None
    state: dict[StateKey, Event] = {}
    for proto in answer.state_events:
        event = _state_event(proto, room_version)
        if event.state_key is not None:
            state[event.state_tuple] = event
    wanted_here = auth_types_for_event(
        _provisional(room_version, room_id, type, sender, content, state_key))
    auth_events = [state[key] for key in wanted_here if key in state]
    prev_event_ids = list(answer.latest_event_ids)[:MAX_PREV_EVENTS]
    event_hashes: dict[str, str] | None = None
    if room_version.event_format is EventFormat.V1:
        # Room versions 1 and 2 reference events with their reference hashes.
        event_hashes = {e.event_id: reference_hash_base64(e.pdu, room_version) for e in auth_events}
        if prev_event_ids:
            found = await roomserver.query_events_by_id(
                roomserver_pb2.QueryEventsByIDRequest(event_ids=prev_event_ids))
            for proto in found.events:
                prev = Event.from_json(proto.pdu_json, room_version, proto.event_id or None)
                event_hashes[prev.event_id] = reference_hash_base64(prev.pdu, room_version)
    return _build(
        room_version, room_id=room_id, type=type, sender=sender, content=content, state_key=state_key,
        prev_event_ids=prev_event_ids, auth_event_ids=[e.event_id for e in auth_events],
        depth=max(answer.depth, 1), origin_server_ts=now_ms if now_ms is not None else _now_ms(),
        server_name=server_name, signing_key=signing_key, redacts=redacts, event_hashes=event_hashes)


# -- room creation ---------------------------------------------------------------


@dataclass
class InitialStateEvent:
    type: str
    state_key: str
    content: dict[str, Any]


@dataclass
class RoomCreationRequest:
    """What ``/createRoom`` asks for, already type-checked by the caller."""

    creator: str
    room_version: RoomVersion
    preset: str = PRESET_PRIVATE
    name: str | None = None
    topic: str | None = None
    initial_state: list[InitialStateEvent] = field(default_factory=list)
    invite: list[str] = field(default_factory=list)
    creation_content: dict[str, Any] = field(default_factory=dict)
    power_level_content_override: dict[str, Any] | None = None
    canonical_alias: str | None = None
    # Extra content of the creator's join (displayname, avatar_url).
    creator_join_content: dict[str, Any] = field(default_factory=dict)


@dataclass
class RoomCreation:
    room_id: str
    # In the order they must be input: each one's prev event is the one before.
    events: list[Event]


def default_power_levels(request: RoomCreationRequest) -> dict[str, Any]:
    """The initial power levels, as Synapse sets them. In room version 12
    the creators have infinite power and are not listed; before it the
    creator (and, for trusted_private_chat, every invitee) gets 100."""
    version = request.room_version
    users: dict[str, int] = {}
    if not version.hydra:
        users[request.creator] = 100
        if request.preset == PRESET_TRUSTED_PRIVATE:
            for invitee in request.invite:
                users[invitee] = 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            ev.NAME: 50,
            ev.POWER_LEVELS: 100,
            ev.HISTORY_VISIBILITY: 100,
            ev.CANONICAL_ALIAS: 50,
            "m.room.avatar": 50,
            # v12: MUST be above state_default, so that upgrading a room
            # takes more than ordinary state changes; 150 as Synapse.
            ev.TOMBSTONE: 150 if version.hydra else 100,
            ev.SERVER_ACL: 100,
            ev.ENCRYPTION: 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        # Anyone in a private room may invite (Synapse's preset default).
        "invite": 50 if request.preset == PRESET_PUBLIC else 0,
        "notifications": {"room": 50},
    }


def _create_content(request: RoomCreationRequest) -> dict[str, Any]:
    version = request.room_version
    content = dict(request.creation_content)
    content["room_version"] = version.identifier
    if version.implicit_room_creator:
        content.pop("creator", None)
    else:
        content["creator"] = request.creator
    if version.hydra:
        extra = content.get("additional_creators", [])
        if not isinstance(extra, list) or not all(isinstance(u, str) and is_valid_user_id(u) for u in extra):
            raise errors.InvalidParam("creation_content.additional_creators must be a list of user IDs")
        if request.preset == PRESET_TRUSTED_PRIVATE:
            extra = [*extra, *request.invite]
        extra = [u for u in dict.fromkeys(extra) if u != request.creator]
        if extra:
            content["additional_creators"] = extra
        else:
            content.pop("additional_creators", None)
    return content


def _creators(request: RoomCreationRequest, create_content: Mapping[str, Any]) -> set[str]:
    creators = {request.creator}
    if request.room_version.hydra:
        creators.update(create_content.get("additional_creators", []))
    return creators


def new_room_id(server_name: str) -> str:
    """A random room ID for room versions 1 to 11."""
    return "!" + "".join(secrets.choice(ROOM_ID_CHARS) for _ in range(18)) + ":" + server_name


def build_room_creation_events(
    request: RoomCreationRequest,
    *,
    server_name: str,
    signing_key: SigningKey,
    now_ms: int | None = None,
) -> RoomCreation:
    """The initial events of a new room, in the order the spec gives
    (invites excepted: they are separate membership events sent after the
    room exists). Raises InvalidParam/BadJSON for a request that makes bad
    events and Forbidden for one the auth rules refuse."""
    version = request.room_version
    creator = request.creator
    ts = now_ms if now_ms is not None else _now_ms()
    create_content = _create_content(request)
    creators = _creators(request, create_content)

    initial: dict[StateKey, dict[str, Any]] = {}
    for item in request.initial_state:
        if item.type == ev.CREATE:
            raise errors.InvalidParam("initial_state may not contain m.room.create (use creation_content)")
        initial[(item.type, item.state_key)] = item.content

    given_power_levels = initial.pop((ev.POWER_LEVELS, ""), None)
    power_levels = dict(given_power_levels or default_power_levels(request))
    if request.power_level_content_override:
        power_levels.update(request.power_level_content_override)
    if version.hydra:
        listed = power_levels.get("users")
        if isinstance(listed, dict) and creators & set(listed):
            raise errors.InvalidParam(
                "room creators have infinite power in this room version and cannot be in power levels' users")

    wanted: list[tuple[str, str, dict[str, Any]]] = [
        (ev.CREATE, "", create_content),
        (ev.MEMBER, creator, {**request.creator_join_content, "membership": "join"}),
        (ev.POWER_LEVELS, "", power_levels),
    ]
    if request.canonical_alias:
        wanted.append((ev.CANONICAL_ALIAS, "", {"alias": request.canonical_alias}))
    preset_state: list[tuple[str, str, dict[str, Any]]] = [
        (ev.JOIN_RULES, "", {"join_rule": "public" if request.preset == PRESET_PUBLIC else "invite"}),
        (ev.HISTORY_VISIBILITY, "", {"history_visibility": "shared"}),
    ]
    if request.preset != PRESET_PUBLIC:
        # Absent guest access means forbidden, so public rooms need no event.
        preset_state.append((GUEST_ACCESS, "", {"guest_access": "can_join"}))
    if request.name is not None:
        initial.pop((ev.NAME, ""), None)
    if request.topic is not None:
        initial.pop((ev.TOPIC, ""), None)
    for type, state_key, content in preset_state:
        # initial_state takes precedence over the preset.
        if (type, state_key) not in initial:
            wanted.append((type, state_key, content))
    wanted.extend((type, state_key, content) for (type, state_key), content in initial.items())
    if request.name is not None:
        wanted.append((ev.NAME, "", {"name": request.name}))
    if request.topic is not None:
        wanted.append((ev.TOPIC, "", {
            "topic": request.topic,
            "m.topic": {"m.text": [{"mimetype": "text/plain", "body": request.topic}]},
        }))

    room_id: str | None = None if version.hydra else new_room_id(server_name)
    state: dict[StateKey, Event] = {}
    built: list[Event] = []
    hashes: dict[str, str] = {}
    for depth, (type, state_key, content) in enumerate(wanted, start=1):
        provisional = _provisional(version, room_id, type, creator, content, state_key)
        auth_events = [state[key] for key in auth_types_for_event(provisional) if key in state]
        event = _build(
            version, room_id=room_id, type=type, sender=creator, content=content, state_key=state_key,
            prev_event_ids=[built[-1].event_id] if built else [],
            auth_event_ids=[e.event_id for e in auth_events], depth=depth, origin_server_ts=ts,
            server_name=server_name, signing_key=signing_key,
            event_hashes=hashes if version.event_format is EventFormat.V1 else None)
        try:
            check_auth_rules(event, state)
        except AuthError as e:
            raise errors.Forbidden(f"{type} ({state_key!r}) would not be allowed: {e}") from None
        if room_id is None:
            room_id = event.room_id
        if version.event_format is EventFormat.V1:
            hashes[event.event_id] = reference_hash_base64(event.pdu, version)
        state[(type, state_key)] = event
        built.append(event)
    assert room_id is not None
    return RoomCreation(room_id=room_id, events=built)

