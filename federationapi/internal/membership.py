"""Joining, leaving, inviting and knocking across servers (make_*/send_*,
invite v2): the outbound half, and the checks both halves make on a
membership event received from another server.

Spec: server-server-api.md "Joining Rooms", "Knocking upon a room",
"Inviting to a room", "Leaving Rooms (Rejecting Invites)";
data/api/server-server/joins-v2.yaml, leaving-v2.yaml, invites-v2.yaml,
knocks.yaml.

A remote join: ``make_join`` with each candidate server in turn (``ver`` =
every room version we support), the join built from the template and
signed, ``send_join`` v2 (v1 when the server does not know v2). The
returned state and auth chain are checked (event IDs, room, content hashes,
signatures; bad ones are dropped, as Synapse does), given to the room
server as outliers in auth order, then the join as a new event whose state
before is the returned state. Leaves and knocks through a remote server
are stored by the room server as outliers of the user's membership (the
room server keeps such a membership for a room it is not in, as it does
for a remote invite).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from myelin.federationapi.v1 import federationapi_pb2 as pb
from myelin.roomserver.v1 import events_pb2, input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common import errors
from common.built_events import BUILT_EVENTS_KEPT, note_built
from federationapi.client import FederationError, HttpResponseError
from federationapi.internal.context import FederationContext
from federationapi.keyring import KeyRing
from matrixlib import events as ev
from matrixlib.builder import build_event
from matrixlib.canonical_json import encode_canonical_json
from matrixlib.events import Event, EventFormatError
from matrixlib.hashes import check_content_hash, event_id_of_reference_hash
from matrixlib.redaction import redact
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion, get_room_version
from matrixlib.signing import SignatureError, event_signed_bytes, servers_that_must_sign
from roomserver.api import InputAPI

logger = logging.getLogger(__name__)

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"

#: Every room version this server can join, in the order sent as ``ver``.
SUPPORTED_ROOM_VERSIONS: tuple[str, ...] = tuple(KNOWN_ROOM_VERSIONS)

JOIN_AUTHORISED_VIA = "join_authorised_via_users_server"

#: How many received events are checked at once (signature checks may fetch keys).
VERIFY_CONCURRENCY = 32
#: How many outliers go to the room server in one input call: no more than
#: this process keeps of the events it hands over (``note_built``), so that a
#: room server in this process takes every one back instead of parsing it.
OUTLIER_CHUNK = BUILT_EVENTS_KEPT

#: Errcodes after which the next candidate server is tried (spec
#: "Restricted rooms": the joining server should try a different server).
FAILOVER_ERRCODES = frozenset({"M_UNABLE_TO_AUTHORISE_JOIN", "M_UNABLE_TO_GRANT_JOIN", "M_NOT_FOUND",
                               "M_UNRECOGNIZED"})

NEW = input_log_pb2.INPUT_KIND_NEW
OUTLIER = input_log_pb2.INPUT_KIND_OUTLIER
_GOOD_OUTCOMES = (rs_pb.INPUT_OUTCOME_ACCEPTED, rs_pb.INPUT_OUTCOME_DUPLICATE)


class UnableToAuthoriseJoin(errors.MatrixError):
    """400: the resident cannot check the restricted join's conditions."""

    errcode = "M_UNABLE_TO_AUTHORISE_JOIN"
    http_status = 400


class UnableToGrantJoin(errors.MatrixError):
    """400: the user may join, but no local user of ours can authorise it."""

    errcode = "M_UNABLE_TO_GRANT_JOIN"
    http_status = 400


# -- checks both sides make ---------------------------------------------------------


def domain_of(identifier: str) -> str:
    return identifier.partition(":")[2]


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_pdu(pdu: Any, room_version: RoomVersion) -> Event:
    """The event of a received PDU; 400 M_BAD_JSON when it is not one."""
    if not isinstance(pdu, dict):
        raise errors.BadJSON("the event is not a JSON object")
    try:
        event = Event(pdu, room_version)
        _ = event.event_id, event.room_id
        # Canonical JSON must be possible (no floats, integers in range).
        encode_canonical_json(redact(event.pdu, room_version))
    except (EventFormatError, ValueError, KeyError, TypeError) as e:
        raise errors.BadJSON(f"malformed event: {e}") from None
    return event


async def check_signed_pdu(keyring: KeyRing, event: Event) -> None:
    """The content hash and the signatures of a received event (server-server
    API "Checks performed on receipt of a PDU", 1 and 2). Raises
    ``SignatureError``."""
    if not check_content_hash(event.pdu):
        raise SignatureError(f"{event.event_id} does not match its content hash")
    await keyring.verify_event_signatures(event)


def check_membership_event(event: Event, *, room_id: str, event_id: str | None, membership: str,
                           origin: str) -> None:
    """A membership event sent to us by ``origin`` on behalf of its own
    user: the right room, ID, type and membership, the user's own event
    (sender = state_key) and one of the origin's users. 400 / 403."""
    if event_id is not None and event.event_id != event_id:
        raise errors.BadJSON(f"the event's ID is {event.event_id}, not {event_id}")
    if event.room_id != room_id:
        raise errors.BadJSON(f"the event is in room {event.room_id}, not {room_id}")
    if event.type != ev.MEMBER or event.state_key is None:
        raise errors.BadJSON("the event is not an m.room.member event")
    if event.membership != membership:
        raise errors.BadJSON(f"the event's membership is {event.membership!r}, not {membership!r}")
    if event.sender != event.state_key:
        raise errors.BadJSON("the event's sender is not its state_key")
    if domain_of(event.sender) != origin:
        raise errors.Forbidden(f"{event.sender} is not a user of {origin}")


#: The state a knocker is sent (``knock_room_state``, full PDUs; the create
#: event is required since v1.16), as the room server picks it for invites.
STRIPPED_STATE_TYPES: tuple[str, ...] = (ev.CREATE, ev.JOIN_RULES, ev.NAME, "m.room.avatar", ev.TOPIC,
                                         ev.CANONICAL_ALIAS, ev.ENCRYPTION)


def stripped(pdu: Mapping[str, Any]) -> dict[str, Any] | None:
    """The client-server "stripped state" form of a state event in a
    received ``invite_room_state``/``knock_room_state`` (full PDUs since
    v1.16, stripped before: both are accepted)."""
    event_type, state_key = pdu.get("type"), pdu.get("state_key")
    content, sender = pdu.get("content"), pdu.get("sender")
    if not isinstance(event_type, str) or not isinstance(state_key, str) or not isinstance(content, dict):
        return None
    result: dict[str, Any] = {"type": event_type, "state_key": state_key, "content": content}
    if isinstance(sender, str):
        result["sender"] = sender
    return result


# -- the room server ------------------------------------------------------------------


def _proto(event: Event) -> events_pb2.Event:
    return events_pb2.Event(event_id=event.event_id, room_version=event.room_version.identifier,
                            pdu_json=event.to_json())


async def input_events(roomserver: InputAPI, events: Sequence[Event], kind: int, *, origin: str = "",
                       state_event_ids: Sequence[str] | None = None) -> list[rs_pb.InputEventResult]:
    """Inputs ``events`` in one call and waits for the room server. A room
    server in this process takes the checked events back (``note_built``)
    instead of parsing their JSON again."""
    inputs = []
    for event in events:
        note_built(event)
        item = input_log_pb2.InputRoomEvent(kind=kind, event=_proto(event), origin=origin)  # type: ignore[arg-type]
        if state_event_ids is not None:
            item.has_state = True
            item.state_event_ids.extend(state_event_ids)
        inputs.append(item)
    answer = await roomserver.input_room_events(rs_pb.InputRoomEventsRequest(events=inputs, wait=True))
    return list(answer.results)


def raise_for_outcome(result: rs_pb.InputEventResult) -> None:
    """403 for an event the room's rules refuse, 400 for one the room server
    could not process; nothing for an accepted (or known) one."""
    if result.outcome in _GOOD_OUTCOMES:
        return
    if result.outcome in (rs_pb.INPUT_OUTCOME_REJECTED, rs_pb.INPUT_OUTCOME_SOFT_FAILED):
        raise errors.Forbidden(result.reason or "The event is not allowed in the room")
    raise errors.BadJSON(result.reason or "The event could not be processed")


# -- outbound requests ----------------------------------------------------------------


def _path(prefix: str, verb: str, *parts: str) -> str:
    return f"{prefix}/{verb}/" + "/".join(quote(p, safe="") for p in parts)


def _remote_error(error: HttpResponseError) -> errors.MatrixError:
    """The remote server's refusal as our error (403 stays 403, an
    incompatible version stays that)."""
    body = error.json if isinstance(error.json, dict) else {}
    errcode = body.get("errcode") if isinstance(body.get("errcode"), str) else ""
    message = f"{error.destination}: {body.get('error') or errcode or f'HTTP {error.status}'}"
    if errcode == "M_INCOMPATIBLE_ROOM_VERSION":
        extra = {"room_version": body["room_version"]} if isinstance(body.get("room_version"), str) else {}
        return errors.IncompatibleRoomVersion(message, extra=extra)
    if error.status == 403:
        return errors.Forbidden(message)
    if error.status == 404:
        return errors.NotFound(message)
    if error.status == 400:
        return errors.BadJSON(message)
    return errors.Unavailable(message)


def _should_fail_over(error: HttpResponseError) -> bool:
    body = error.json if isinstance(error.json, dict) else {}
    return error.status >= 500 or error.status == 429 or body.get("errcode") in FAILOVER_ERRCODES \
        or error.status == 404


def candidate_servers(context: FederationContext, names: Iterable[str]) -> list[str]:
    """The servers to try, in order, without duplicates, blanks or us."""
    return [s for s in dict.fromkeys(names) if s and s != context.server_name]


@dataclass
class Template:
    room_version: RoomVersion
    event: dict[str, Any]


async def make_membership(context: FederationContext, server: str, verb: str, room_id: str, user_id: str,
                          membership: str, *, versions: bool) -> Template:
    """``GET /make_<verb>`` and the template's checks (spec: the joining
    server MUST check type, room_id, sender, state_key, membership)."""
    query = {"ver": list(SUPPORTED_ROOM_VERSIONS)} if versions else None
    answer = await context.client.get_json(server, _path(V1, f"make_{verb}", room_id, user_id), query=query)
    if not isinstance(answer, dict) or not isinstance(answer.get("event"), dict):
        raise errors.BadJSON(f"{server} answered make_{verb} without an event")
    version_id = answer.get("room_version", "1")
    if not isinstance(version_id, str) or version_id not in KNOWN_ROOM_VERSIONS:
        raise errors.IncompatibleRoomVersion(f"{server} offered unsupported room version {version_id!r}")
    template: dict[str, Any] = answer["event"]
    content = template.get("content")
    if (template.get("type") != ev.MEMBER or template.get("room_id") != room_id
            or template.get("sender") != user_id or template.get("state_key") != user_id
            or not isinstance(content, dict) or content.get("membership") != membership):
        raise errors.BadJSON(f"{server}'s make_{verb} template is not a {membership} of {user_id} in {room_id}")
    return Template(get_room_version(version_id), template)


def _refs(value: Any, room_version: RoomVersion) -> tuple[list[str], dict[str, str]]:
    """Event IDs of a template's prev_events/auth_events and, for room
    versions 1 and 2, the reference hashes given with them."""
    ids: list[str] = []
    hashes: dict[str, str] = {}
    if not isinstance(value, list):
        raise errors.BadJSON("the template's event references are not a list")
    for item in value:
        if room_version.event_format is EventFormat.V1:
            if not (isinstance(item, list) and item and isinstance(item[0], str)):
                raise errors.BadJSON("the template's event references are malformed")
            ids.append(item[0])
            if len(item) > 1 and isinstance(item[1], dict) and isinstance(item[1].get("sha256"), str):
                hashes[item[0]] = item[1]["sha256"]
        elif isinstance(item, str):
            ids.append(item)
        else:
            raise errors.BadJSON("the template's event references are malformed")
    return ids, hashes


def event_from_template(context: FederationContext, template: Template, content: Mapping[str, Any]) -> Event:
    """Our signed event from a make_* template: its references and depth,
    our content (the template's ``join_authorised_via_users_server``
    kept), a new timestamp."""
    pdu = template.event
    rv = template.room_version
    prev_ids, prev_hashes = _refs(pdu.get("prev_events", []), rv)
    auth_ids, auth_hashes = _refs(pdu.get("auth_events", []), rv)
    depth = pdu.get("depth")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise errors.BadJSON("the template has no valid depth")
    full_content = dict(content)
    full_content["membership"] = pdu["content"]["membership"]
    authoriser = pdu["content"].get(JOIN_AUTHORISED_VIA)
    if isinstance(authoriser, str):
        full_content[JOIN_AUTHORISED_VIA] = authoriser
    try:
        return build_event(
            rv, room_id=pdu["room_id"], type=ev.MEMBER, sender=pdu["sender"], content=full_content,
            state_key=pdu["state_key"], prev_event_ids=prev_ids, auth_event_ids=auth_ids, depth=depth,
            origin_server_ts=now_ms(), server_name=context.server_name, signing_key=context.signing_key,
            event_hashes={**prev_hashes, **auth_hashes} if rv.event_format is EventFormat.V1 else None)
    except ValueError as e:
        raise errors.BadJSON(f"cannot build the event from the template: {e}") from None


async def send_membership(context: FederationContext, server: str, verb: str, event: Event) -> Any:
    """``PUT /send_<verb>`` v2 (v1 for a server that does not know v2; v1
    answers ``[200, body]``); answers the body."""
    path_parts = (event.room_id, event.event_id)
    if verb != "knock":
        try:
            return await context.client.put_json(server, _path(V2, f"send_{verb}", *path_parts), event.pdu)
        except HttpResponseError as e:
            body = e.json if isinstance(e.json, dict) else {}
            if not (e.status in (400, 404) and body.get("errcode", "M_UNRECOGNIZED") == "M_UNRECOGNIZED"):
                raise
    answer = await context.client.put_json(server, _path(V1, f"send_{verb}", *path_parts), event.pdu)
    if verb != "knock" and isinstance(answer, list) and len(answer) == 2:
        return answer[1]
    return answer


# -- checking what a resident sends back ------------------------------------------------------


def parse_received_pdu(pdu: Any, room_version: RoomVersion) -> tuple[Event, bytes]:
    """``parse_pdu`` for an event whose signatures are checked next: the
    event and the bytes its servers signed, encoded once for both its ID
    (their hash, from room version 3) and the signature checks. 400
    M_BAD_JSON when it is not an event."""
    if not isinstance(pdu, dict):
        raise errors.BadJSON("the event is not a JSON object")
    body = dict(pdu)
    try:
        event_id: str | None = None
        if room_version.event_format is not EventFormat.V1:
            # A v3+ event's ID is its reference hash; an `event_id` left in the JSON is not part of it.
            body.pop("event_id", None)
        # Strict: canonical JSON must be possible (no floats, integers in range).
        signed = event_signed_bytes(body, room_version, strict=True)
        if room_version.event_format is not EventFormat.V1:
            event_id = event_id_of_reference_hash(hashlib.sha256(signed).digest(), room_version)
        event = Event(body, room_version, event_id)
        _ = event.event_id, event.room_id
        # From room version 6 the whole event must be canonical JSON (as
        # Synapse checks). Encoded once: the room server is given these bytes.
        event.to_json()
    except (EventFormatError, ValueError, KeyError, TypeError) as e:
        raise errors.BadJSON(f"malformed event: {e}") from None
    return event, signed


#: From this many events on, a send_join answer's checks run in two threads.
PARALLEL_CHECKS_FROM = 64
_check_executor: ThreadPoolExecutor | None = None


def _check_thread() -> ThreadPoolExecutor:
    global _check_executor
    if _check_executor is None:
        _check_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-checks")
    return _check_executor


def _check_from_memory(keyring: KeyRing, items: Sequence[tuple[Event, bytes]], room_id: str,
                       hashes_checked: bool = False) -> tuple[set[str], list[tuple[Event, bytes]]]:
    """The content hashes of ``items`` (unless ``hashes_checked`` already) and
    their signatures with the keys the KeyRing holds: (the IDs of the good
    ones, those whose keys are not held). Bad ones are logged and left out of
    both. No I/O."""
    good: set[str] = set()
    waiting: list[tuple[Event, bytes]] = []
    for event, signed in items:
        try:
            if not hashes_checked and not check_content_hash(event.pdu):
                raise SignatureError(f"{event.event_id} does not match its content hash")
            if keyring.verify_event_signatures_from_memory(event, signed):
                good.add(event.event_id)
            else:
                waiting.append((event, signed))
        except (SignatureError, EventFormatError) as e:
            logger.info("dropping %s of %s: %s", event.event_id, room_id, e)
    return good, waiting


async def verified_events(keyring: KeyRing, pdus: Iterable[Any], room_version: RoomVersion,
                          room_id: str) -> dict[str, Event]:
    """The events of ``pdus`` that are well formed, in the room, match their
    content hash and carry their servers' signatures; the others are
    logged and dropped.

    Each event is encoded once for its ID and its signatures. Those whose
    keys the KeyRing holds in memory (after the first of a server's events,
    all of them) are checked right here, one after the other; of the others,
    one for each set of signing servers looks up their keys first (a bounded
    number at a time), and the rest are then mostly checked from memory."""
    parsed: dict[str, tuple[Event, bytes]] = {}
    for pdu in pdus:
        try:
            event, signed = parse_received_pdu(pdu, room_version)
        except errors.BadJSON as e:
            logger.info("dropping a malformed event of %s: %s", room_id, e.message)
            continue
        if event.room_id != room_id:
            logger.info("dropping %s: it is in %s, not %s", event.event_id, event.room_id, room_id)
            continue
        parsed.setdefault(event.event_id, (event, signed))
    items = list(parsed.values())
    if len(items) >= PARALLEL_CHECKS_FROM:
        # The signature checks (libsodium) run without the GIL: half of them
        # in a thread of their own, alongside the other half here.
        half = len(items) // 2
        elsewhere = asyncio.get_running_loop().run_in_executor(
            _check_thread(), _check_from_memory, keyring, items[half:], room_id)
        good, waiting = _check_from_memory(keyring, items[:half], room_id)
        more_good, more_waiting = await elsewhere
        good |= more_good
        waiting += more_waiting
    else:
        good, waiting = _check_from_memory(keyring, items, room_id)
    limit = asyncio.Semaphore(VERIFY_CONCURRENCY)

    async def check(event: Event, signed: bytes) -> None:
        async with limit:
            try:
                await keyring.verify_event_signatures(event, signed)
                good.add(event.event_id)
            except (SignatureError, EventFormatError) as e:
                logger.info("dropping %s of %s: %s", event.event_id, room_id, e)

    # One event for each set of servers that must sign first (looking up, or
    # fetching, their keys), then the others from memory where they can be.
    firsts: dict[frozenset[str], tuple[Event, bytes]] = {}
    later: list[tuple[Event, bytes]] = []
    for event, signed in waiting:
        try:
            signers = frozenset(servers_that_must_sign(event))
        except EventFormatError as e:
            logger.info("dropping %s of %s: %s", event.event_id, room_id, e)
            continue
        if signers in firsts:
            later.append((event, signed))
        else:
            firsts[signers] = (event, signed)
    await asyncio.gather(*(check(event, signed) for event, signed in firsts.values()))
    later_good, still = _check_from_memory(keyring, later, room_id, hashes_checked=True)
    good |= later_good
    await asyncio.gather(*(check(event, signed) for event, signed in still))
    return {event_id: event for event_id, (event, _) in parsed.items() if event_id in good}


def auth_order(events: Iterable[Event]) -> list[Event]:
    """Events with each one's auth events (among them) before it; ties by depth."""
    by_id = {e.event_id: e for e in events}
    waiting = {i: {a for a in e.auth_event_ids if a in by_id and a != i} for i, e in by_id.items()}
    dependents: dict[str, list[str]] = {}
    for event_id, needs in waiting.items():
        for needed in needs:
            dependents.setdefault(needed, []).append(event_id)
    ready = sorted((i for i, needs in waiting.items() if not needs), key=lambda i: (by_id[i].depth, i))
    order: list[Event] = []
    while ready:
        event_id = ready.pop(0)
        order.append(by_id[event_id])
        released = []
        for dependent in dependents.get(event_id, []):
            waiting[dependent].discard(event_id)
            if not waiting[dependent]:
                released.append(dependent)
        if released:
            ready = sorted(ready + released, key=lambda i: (by_id[i].depth, i))
    placed = {e.event_id for e in order}
    # A cycle cannot be authorised; the room server rejects what is left.
    order.extend(e for i, e in by_id.items() if i not in placed)
    return order


# -- perform_join ---------------------------------------------------------------------------


async def perform_join(context: FederationContext, req: pb.PerformJoinRequest) -> pb.PerformJoinResponse:
    servers = candidate_servers(context, req.server_names)
    if not servers:
        raise errors.NotFound(f"No known servers to join {req.room_id} through")
    content: dict[str, Any] = {}
    if req.content_json:
        loaded = json.loads(req.content_json)
        if isinstance(loaded, dict):
            content = {k: v for k, v in loaded.items() if k != "membership"}
    failures: list[str] = []
    for server in servers:
        try:
            event_id = await _join_via(context, server, req.room_id, req.user_id, content)
            return pb.PerformJoinResponse(event_id=event_id, joined_via=server)
        except HttpResponseError as e:
            if not _should_fail_over(e):
                raise _remote_error(e) from None
            failures.append(str(e))
        except (FederationError, errors.BadJSON, errors.NotFound) as e:
            failures.append(f"{server}: {e}")
        logger.info("joining %s via %s failed: %s", req.room_id, server, failures[-1])
    raise errors.NotFound(f"No server could be reached to join {req.room_id}: {'; '.join(failures)}")


async def _join_via(context: FederationContext, server: str, room_id: str, user_id: str,
                    content: Mapping[str, Any]) -> str:
    template = await make_membership(context, server, "join", room_id, user_id, "join", versions=True)
    rv = template.room_version
    join = event_from_template(context, template, content)
    answer = await send_membership(context, server, "join", join)
    if not isinstance(answer, dict):
        raise errors.BadJSON(f"{server} answered send_join with something that is not an object")
    state_pdus, chain_pdus = answer.get("state"), answer.get("auth_chain")
    if not isinstance(state_pdus, list) or not isinstance(chain_pdus, list):
        raise errors.BadJSON(f"{server} answered send_join without state and auth_chain")
    # The resident's copy carries its signature (needed for restricted joins).
    signed = answer.get("event")
    if isinstance(signed, dict):
        try:
            theirs = parse_pdu(signed, rv)
            if theirs.event_id == join.event_id:
                await check_signed_pdu(context.keyring, theirs)
                join = theirs
        except (errors.BadJSON, SignatureError) as e:
            logger.info("ignoring %s's copy of the join %s: %s", server, join.event_id, e)
    state = await verified_events(context.keyring, state_pdus, rv, room_id)
    chain = await verified_events(context.keyring, chain_pdus, rv, room_id)
    state.pop(join.event_id, None)
    chain.pop(join.event_id, None)
    if not any(e.type == ev.CREATE and e.state_key == "" for e in state.values()):
        raise errors.BadJSON(f"{server}'s send_join state has no valid create event")
    everything = auth_order({**chain, **state}.values())
    stored: set[str] = set()
    for start in range(0, len(everything), OUTLIER_CHUNK):
        results = await input_events(context.roomserver, everything[start:start + OUTLIER_CHUNK], OUTLIER,
                                     origin=server)
        for result in results:
            if result.outcome in _GOOD_OUTCOMES:
                stored.add(result.event_id)
            else:
                logger.info("the room server did not take %s of %s: %s", result.event_id, room_id, result.reason)
    state_ids = [i for i in state if i in stored]
    results = await input_events(context.roomserver, [join], NEW, origin=server, state_event_ids=state_ids)
    for result in results:
        raise_for_outcome(result)
    logger.info("joined %s to %s via %s (%d state events, %d in the auth chain)", user_id, room_id, server,
                len(state_ids), len(chain))
    return join.event_id


# -- perform_leave / perform_knock --------------------------------------------------------------


async def _servers_for_user_in_room(context: FederationContext, room_id: str, user_id: str) -> list[str]:
    """Where a leave of a room we are not in can go: the server of whoever
    sent the user's invite, the servers of the senders of the room state
    that came with the invite or knock, then the room ID's server."""
    names: list[str] = []
    found = await context.roomserver.query_membership_for_user(
        rs_pb.QueryMembershipForUserRequest(room_id=room_id, user_id=user_id))
    if found.event_id:
        events = await context.roomserver.query_events_by_id(
            rs_pb.QueryEventsByIDRequest(event_ids=[found.event_id], include_unaccepted=True))
        for proto in events.events:
            pdu = json.loads(proto.pdu_json)
            unsigned = pdu.get("unsigned") if isinstance(pdu.get("unsigned"), dict) else {}
            shown = [*unsigned.get("invite_room_state", []), *unsigned.get("knock_room_state", [])]
            senders = [pdu.get("sender"), *(s.get("sender") for s in shown if isinstance(s, dict))]
            names += [domain_of(s) for s in senders if isinstance(s, str)]
    if domain_of(room_id):
        names.append(domain_of(room_id))
    return names


async def _remote_membership(context: FederationContext, verb: str, membership: str, room_id: str,
                             user_id: str, servers: Sequence[str], content: Mapping[str, Any]
                             ) -> tuple[Event, Any, str]:
    """make_<verb> and send_<verb> with each server in turn; the sent event,
    the send answer and the server."""
    if not servers:
        raise errors.NotFound(f"No known servers to {verb} {room_id} through")
    failures: list[str] = []
    for server in servers:
        try:
            template = await make_membership(context, server, verb, room_id, user_id, membership,
                                             versions=verb == "knock")
            event = event_from_template(context, template, content)
            answer = await send_membership(context, server, verb, event)
            return event, answer, server
        except HttpResponseError as e:
            if not _should_fail_over(e):
                raise _remote_error(e) from None
            failures.append(str(e))
        except (FederationError, errors.BadJSON, errors.NotFound) as e:
            failures.append(f"{server}: {e}")
        logger.info("%s of %s via %s failed: %s", verb, room_id, server, failures[-1])
    raise errors.NotFound(f"No server could be reached to {verb} {room_id}: {'; '.join(failures)}")


async def _store_own_membership(context: FederationContext, event: Event, origin: str) -> bool:
    """The room server keeps our user's membership in a room we are not in;
    False when it did not."""
    stored = True
    for result in await input_events(context.roomserver, [event], OUTLIER, origin=origin):
        if result.outcome not in _GOOD_OUTCOMES:
            stored = False
            logger.warning("the room server did not store %s (%s): %s", event.event_id,
                           event.membership, result.reason)
    return stored


async def perform_leave(context: FederationContext, req: pb.PerformLeaveRequest) -> pb.PerformLeaveResponse:
    servers = candidate_servers(context, [*req.server_names,
                                          *await _servers_for_user_in_room(context, req.room_id, req.user_id)])
    content = {"reason": req.reason} if req.reason else {}
    try:
        event, _, server = await _remote_membership(context, "leave", "leave", req.room_id, req.user_id, servers,
                                                    content)
    except (errors.NotFound, errors.Forbidden, errors.Unavailable, errors.BadJSON) as e:
        local = await _out_of_band_leave(context, req, content)
        if local is None:
            raise
        # As Synapse: the user is not left holding an invite no server
        # will take back; the room's servers never hear of it.
        logger.info("rejecting %s's invite to %s here only: %s", req.user_id, req.room_id, e)
        return pb.PerformLeaveResponse(event_id=local)
    await _store_own_membership(context, event, server)
    return pb.PerformLeaveResponse(event_id=event.event_id)


async def _out_of_band_leave(context: FederationContext, req: pb.PerformLeaveRequest,
                             content: Mapping[str, Any]) -> str | None:
    """A leave made and kept here only, on top of the user's invite or
    knock to a room this server has no state of; None when there is none."""
    found = await context.roomserver.query_membership_for_user(
        rs_pb.QueryMembershipForUserRequest(room_id=req.room_id, user_id=req.user_id))
    if found.membership not in ("invite", "knock") or not found.event_id:
        return None
    info = await context.roomserver.query_room_info(rs_pb.QueryRoomInfoRequest(room_id=req.room_id))
    if not info.is_stub:
        return None
    stored = await context.roomserver.query_events_by_id(
        rs_pb.QueryEventsByIDRequest(event_ids=[found.event_id], include_unaccepted=True))
    if not stored.events:
        return None
    rv = get_room_version(info.room_version)
    membership_event = Event.from_json(stored.events[0].pdu_json, rv, stored.events[0].event_id or None)
    leave = build_event(
        rv, room_id=req.room_id, type=ev.MEMBER, sender=req.user_id, content={**content, "membership": "leave"},
        state_key=req.user_id, prev_event_ids=[membership_event.event_id],
        auth_event_ids=[membership_event.event_id], depth=membership_event.depth + 1,
        origin_server_ts=now_ms(), server_name=context.server_name, signing_key=context.signing_key,
        event_hashes={} if rv.event_format is EventFormat.V1 else None)
    return leave.event_id if await _store_own_membership(context, leave, "") else None


async def perform_knock(context: FederationContext, req: pb.PerformKnockRequest) -> pb.PerformKnockResponse:
    servers = candidate_servers(context, [*req.server_names, domain_of(req.room_id)])
    content = {"reason": req.reason} if req.reason else {}
    event, answer, server = await _remote_membership(context, "knock", "knock", req.room_id, req.user_id,
                                                     servers, content)
    shown: list[dict[str, Any]] = []
    if isinstance(answer, dict) and isinstance(answer.get("knock_room_state"), list):
        shown = [s for s in (stripped(p) for p in answer["knock_room_state"] if isinstance(p, dict)) if s]
    else:
        logger.info("%s answered send_knock without knock_room_state", server)
    # Kept with the knock (unsigned is covered by no hash or signature): the
    # senders name servers in the room, to retract the knock through.
    kept = dict(event.pdu)
    kept["unsigned"] = {**event.unsigned, "knock_room_state": shown}
    await _store_own_membership(context, Event(kept, event.room_version), server)
    return pb.PerformKnockResponse(event_id=event.event_id)


# -- perform_invite ------------------------------------------------------------------------------


async def perform_invite(context: FederationContext, req: pb.PerformInviteRequest) -> pb.PerformInviteResponse:
    try:
        rv = get_room_version(req.room_version)
    except ValueError:
        raise errors.UnsupportedRoomVersion(f"unknown room version {req.room_version!r}") from None
    invite = parse_pdu(json.loads(req.event_json), rv)
    if invite.type != ev.MEMBER or invite.membership != "invite" or not invite.state_key:
        raise errors.BadJSON("not an invite event")
    destination = domain_of(invite.state_key)
    if destination == context.server_name:
        raise errors.BadJSON("the invitee is a local user")
    room_state: list[Any] = []
    for raw in req.invite_room_state_json:
        try:
            room_state.append(json.loads(raw))
        except ValueError:
            continue
    body = {"event": invite.pdu, "room_version": rv.identifier, "invite_room_state": room_state}
    try:
        answer = await context.client.put_json(
            destination, _path(V2, "invite", invite.room_id, invite.event_id), body)
    except HttpResponseError as e:
        raise _remote_error(e) from None
    except FederationError as e:
        raise errors.NotFound(f"Could not reach {destination} to invite {invite.state_key}: {e}") from None
    returned = answer.get("event") if isinstance(answer, dict) else None
    if not isinstance(returned, dict):
        raise errors.Unavailable(f"{destination} answered the invite without the event")
    signatures = returned.get("signatures")
    theirs = signatures.get(destination) if isinstance(signatures, dict) else None
    if not isinstance(theirs, dict) or not theirs:
        raise errors.Forbidden(f"{destination} did not sign the invite")
    # Our event with their signature added: nothing else of theirs is taken.
    pdu = dict(invite.pdu)
    pdu["signatures"] = {**invite.signatures, destination: theirs}
    signed = Event(pdu, rv)
    try:
        await context.keyring.verify_json_for_server(
            destination, redact(signed.pdu, rv), signed.origin_server_ts if rv.enforce_key_validity else 0)
    except SignatureError as e:
        raise errors.Forbidden(f"{destination}'s signature on the invite is not valid: {e}") from None
    return pb.PerformInviteResponse(event_json=signed.to_json())
