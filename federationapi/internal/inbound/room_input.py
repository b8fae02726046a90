"""Giving one room's checked PDUs to the room server, filling gaps first
(server-server-api "Checks performed on receipt of a PDU", "Backfilling
and retrieving missing events", "Retrieving events").

PDUs whose prev and auth events the room server knows go in as
``INPUT_KIND_NEW`` in one input call, in the order received; the room
server authorises each against its auth events, the state before it
(rejected) and the current state (soft-failed).

A PDU whose prev events are unknown (or known only as outliers, without
state) is a gap: the origin is asked with ``/get_missing_events`` for the
events between our forward extremities and the PDU, which are checked and
input oldest first. An event that still does not connect gets the state
before it from the origin (``/state_ids``, the missing events with
``/event`` or ``/state``), stored as outliers, and goes in with
``has_state``. Missing auth events come from ``/event_auth``. Everything is
bounded (a few state look-ups and one timeout per PDU): a gap that cannot
be filled is a clear per-PDU error, never a wedged room.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from myelin.roomserver.v1 import events_pb2, input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from federationapi.internal.context import FederationContext
from federationapi.internal.inbound.checks import CheckedPDU
from federationapi.internal.inbound.remote import MAX_SINGLE_EVENT_FETCHES, FetchError, RemoteRoom
from matrixlib.events import CREATE
from matrixlib.room_versions import RoomVersion

logger = logging.getLogger(__name__)

NEW = input_log_pb2.INPUT_KIND_NEW
OUTLIER = input_log_pb2.INPUT_KIND_OUTLIER
OLD = input_log_pb2.INPUT_KIND_OLD

#: How many events one /get_missing_events asks for (Synapse asks for 10).
MISSING_EVENTS_LIMIT = 10
#: How many events of one gap may get their state from /state_ids.
MAX_STATE_LOOKUPS = 3
#: A /state_ids answer with more events than this is refused.
MAX_STATE_EVENTS = 100_000
#: How long filling one PDU's gap may take, all requests included.
GAP_TIMEOUT_SECONDS = 60.0

_OK_OUTCOMES = (rs_pb.INPUT_OUTCOME_ACCEPTED, rs_pb.INPUT_OUTCOME_DUPLICATE, rs_pb.INPUT_OUTCOME_SOFT_FAILED)
_CREATE_ONLY = [events_pb2.StateKeyTuple(event_type=CREATE, state_key="")]


class InputFailed(Exception):
    """The event could not be given to the room server (its gap could not be filled)."""


def pdu_result(result: rs_pb.InputEventResult) -> dict[str, Any]:
    """The per-PDU answer of /send: ``{}`` for an event now known (accepted,
    already known, or soft-failed: the sender's view was right when it sent
    it), ``{"error": ...}`` for a rejected or invalid one."""
    if result.outcome in _OK_OUTCOMES:
        return {}
    name = rs_pb.InputOutcome.Name(result.outcome).removeprefix("INPUT_OUTCOME_").lower()
    return {"error": f"{name}: {result.reason}" if result.reason else name}


def order_by_auth(events: Iterable[CheckedPDU]) -> list[CheckedPDU]:
    """The events with each one's auth events (among them) before it,
    shallowest first otherwise."""
    by_id = {e.event_id: e for e in events}
    waiting_on: dict[str, set[str]] = {}
    dependents: dict[str, list[str]] = {}
    for event_id, checked in by_id.items():
        needs = {a for a in checked.event.auth_event_ids if a in by_id and a != event_id}
        waiting_on[event_id] = needs
        for auth_id in needs:
            dependents.setdefault(auth_id, []).append(event_id)
    ready = [(by_id[e].event.depth, e) for e, needs in waiting_on.items() if not needs]
    heapq.heapify(ready)
    ordered: list[CheckedPDU] = []
    while ready:
        _, event_id = heapq.heappop(ready)
        ordered.append(by_id[event_id])
        for dependent in dependents.get(event_id, []):
            waiting_on[dependent].discard(event_id)
            if not waiting_on[dependent]:
                heapq.heappush(ready, (by_id[dependent].event.depth, dependent))
    # An auth cycle (only a broken server makes one): the rest by depth; the
    # room server refuses what it cannot authorise.
    placed = {e.event_id for e in ordered}
    ordered += sorted((e for e in by_id.values() if e.event_id not in placed), key=lambda e: e.event.depth)
    return ordered


class RoomInput:
    """Inputs events of one room received from (or fetched from) ``origin``."""

    def __init__(self, context: FederationContext, origin: str, room_id: str, room_version: RoomVersion) -> None:
        self.context = context
        self.origin = origin
        self.room_id = room_id
        self.room_version = room_version
        self.remote = RemoteRoom(context, origin, room_id, room_version)

    # -- room server ------------------------------------------------------------------

    async def known_ids(self, event_ids: Iterable[str]) -> set[str]:
        """Those of the events the room server has stored (outliers too)."""
        wanted = list(dict.fromkeys(event_ids))
        if not wanted:
            return set()
        answer = await self.context.roomserver.query_events_by_id(
            rs_pb.QueryEventsByIDRequest(event_ids=wanted, include_unaccepted=True))
        return {e.event_id for e in answer.events}

    async def prevs_have_state(self, checked: CheckedPDU) -> bool:
        """Whether the room server knows the state after all the event's prev events."""
        prev_ids = checked.event.prev_event_ids
        if not prev_ids:
            return False
        answer = await self.context.roomserver.query_state_after_events(rs_pb.QueryStateAfterEventsRequest(
            room_id=self.room_id, prev_event_ids=prev_ids, state_to_fetch=_CREATE_ONLY))
        return answer.prev_events_exist

    def input_event(self, checked: CheckedPDU, kind: int = NEW,
                    state_event_ids: Sequence[str] | None = None) -> input_log_pb2.InputRoomEvent:
        item = input_log_pb2.InputRoomEvent(kind=kind, event=checked.to_proto(), origin=self.origin)  # type: ignore[arg-type]
        if state_event_ids is not None:
            item.has_state = True
            item.state_event_ids.extend(state_event_ids)
        return item

    async def input(self, items: Sequence[input_log_pb2.InputRoomEvent]) -> list[rs_pb.InputEventResult]:
        if not items:
            return []
        answer = await self.context.roomserver.input_room_events(
            rs_pb.InputRoomEventsRequest(events=list(items), wait=True))
        return list(answer.results)

    async def input_outliers(self, events: Iterable[CheckedPDU]) -> None:
        ordered = order_by_auth(events)
        for result in await self.input([self.input_event(e, OUTLIER) for e in ordered]):
            if result.outcome == rs_pb.INPUT_OUTCOME_INVALID:
                logger.info("outlier %s of %s from %s not stored: %s", result.event_id, self.room_id,
                            self.origin, result.reason)

    # -- received PDUs ----------------------------------------------------------------

    async def process(self, pdus: Sequence[CheckedPDU]) -> dict[str, dict[str, Any]]:
        """Inputs the PDUs in order; the per-PDU answers of /send."""
        results: dict[str, dict[str, Any]] = {}
        known = await self.known_ids(ref for p in pdus for ref in [*p.event.prev_event_ids, *p.event.auth_event_ids])
        ready: list[CheckedPDU] = []
        for checked in pdus:
            needed = [*checked.event.prev_event_ids, *checked.event.auth_event_ids]
            if needed and all(ref in known for ref in needed):
                ready.append(checked)
                known.add(checked.event_id)
                continue
            results.update(await self._input_ready(ready))
            ready = []
            results[checked.event_id] = await self.fill_gap_and_input(checked)
            known.add(checked.event_id)
        results.update(await self._input_ready(ready))
        return results

    async def _input_ready(self, ready: Sequence[CheckedPDU]) -> dict[str, dict[str, Any]]:
        results: dict[str, dict[str, Any]] = {}
        answers = await self.input([self.input_event(p) for p in ready])
        for checked, answer in zip(ready, answers, strict=True):
            if answer.outcome == rs_pb.INPUT_OUTCOME_INVALID and not await self.prevs_have_state(checked):
                # A prev event known only as an outlier (or one an earlier PDU
                # of this batch should have been): a gap after all.
                results[checked.event_id] = await self.fill_gap_and_input(checked)
            else:
                results[checked.event_id] = pdu_result(answer)
        return results

    async def fill_gap_and_input(self, checked: CheckedPDU) -> dict[str, Any]:
        try:
            async with asyncio.timeout(GAP_TIMEOUT_SECONDS):
                return pdu_result(await self._fill_gap_and_input(checked))
        except TimeoutError:
            return {"error": f"filling the gap before {checked.event_id} took too long"}
        except (FetchError, InputFailed) as exc:
            logger.info("could not fill the gap before %s in %s from %s: %s", checked.event_id, self.room_id,
                        self.origin, exc)
            return {"error": f"could not fill the gap before the event: {exc}"}

    async def _fill_gap_and_input(self, checked: CheckedPDU) -> rs_pb.InputEventResult:
        lookups = [MAX_STATE_LOOKUPS]
        if checked.event.prev_event_ids and not await self.prevs_have_state(checked):
            for missing in await self._missing_events(checked):
                try:
                    result = await self.input_one(missing, lookups)
                    logger.debug("gap event %s: %s", missing.event_id, rs_pb.InputOutcome.Name(result.outcome))
                except (FetchError, InputFailed) as exc:
                    logger.info("gap event %s of %s not input: %s", missing.event_id, self.room_id, exc)
        return await self.input_one(checked, lookups)

    async def _missing_events(self, checked: CheckedPDU) -> list[CheckedPDU]:
        """The events between our forward extremities and the PDU, oldest
        first, that we do not have yet."""
        info = await self.context.roomserver.query_room_info(rs_pb.QueryRoomInfoRequest(room_id=self.room_id))
        try:
            fetched = await self.remote.missing_events(list(info.latest_event_ids), [checked.event_id],
                                                       MISSING_EVENTS_LIMIT)
        except FetchError as exc:
            logger.info("get_missing_events before %s failed: %s", checked.event_id, exc)
            return []
        unique = {f.event_id: f for f in fetched if f.event_id != checked.event_id}
        known = await self.known_ids(unique)
        return sorted((f for f in unique.values() if f.event_id not in known),
                      key=lambda f: (f.event.depth, f.event.origin_server_ts))

    async def input_one(self, checked: CheckedPDU, lookups: list[int], kind: int = NEW) -> rs_pb.InputEventResult:
        """Inputs one event, with the state before it from the origin when
        the room server does not know its prev events. ``lookups`` holds how
        many state look-ups are left (shared by one gap's events)."""
        state_ids: list[str] | None = None
        if not await self.prevs_have_state(checked):
            if lookups[0] <= 0:
                raise InputFailed(f"the prev events of {checked.event_id} are unknown")
            lookups[0] -= 1
            state_ids = await self.fetch_state_before(checked)
        await self.ensure_auth_events(checked)
        [result] = await self.input([self.input_event(checked, kind, state_ids)])
        return result

    async def fetch_state_before(self, checked: CheckedPDU) -> list[str]:
        """The origin's state before the event, with the events we lack
        stored as outliers; answers the state's event IDs."""
        pdu_ids, auth_ids = await self.remote.state_ids(checked.event_id)
        if len(pdu_ids) + len(auth_ids) > MAX_STATE_EVENTS:
            raise InputFailed(f"the state before {checked.event_id} is too big")
        needed = list(dict.fromkeys([*auth_ids, *pdu_ids]))
        known = await self.known_ids(needed)
        missing = [e for e in needed if e not in known]
        if missing:
            if len(missing) > MAX_SINGLE_EVENT_FETCHES:
                wanted = set(missing)
                fetched = [c for c in await self.remote.state(checked.event_id) if c.event_id in wanted]
            else:
                fetched = await self.remote.events(missing)
            await self.input_outliers(fetched)
            still = set(missing) - await self.known_ids(missing)
            lacking_state = [e for e in pdu_ids if e in still]
            if lacking_state:
                raise InputFailed(f"{len(lacking_state)} state events before {checked.event_id} could not be "
                                  f"fetched, e.g. {lacking_state[0]}")
        return pdu_ids

    async def ensure_auth_events(self, checked: CheckedPDU) -> None:
        """Stores the event's missing auth events (from its auth chain) as outliers."""
        auth_ids = checked.event.auth_event_ids
        missing = set(auth_ids) - await self.known_ids(auth_ids)
        if not missing:
            return
        chain = await self.remote.event_auth(checked.event_id)
        known = await self.known_ids(c.event_id for c in chain)
        await self.input_outliers(c for c in chain if c.event_id not in known)
        still = missing - await self.known_ids(missing)
        if still:
            raise InputFailed(f"the auth events of {checked.event_id} could not be fetched: {sorted(still)[0]}")
