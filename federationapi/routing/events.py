"""Inbound federation reads of rooms, served from the room server:
GET /v1/event/{eventId}, /v1/state/{roomId}, /v1/state_ids/{roomId},
/v1/event_auth/{roomId}/{eventId}, /v1/backfill/{roomId} and
POST /v1/get_missing_events/{roomId}.

Spec: server-server-api.md "Retrieving events", "Backfilling and
retrieving missing events"; data/api/server-server/events.yaml,
event_auth.yaml, backfill.yaml. Events are the stored PDUs as signed.
"""

from __future__ import annotations

import time
from typing import Any

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response, parse_json_body
from federationapi.internal.access import RoomAccess, pdu_of, room_id_of
from roomserver.api import FederationRoomserverAPI

V1 = "/_matrix/federation/v1"
MAX_BACKFILL_LIMIT = 100
DEFAULT_MISSING_EVENTS_LIMIT = 10


def _transaction(server_name: str, pdus: list[dict[str, Any]]) -> dict[str, Any]:
    return {"origin": server_name, "origin_server_ts": int(time.time() * 1000), "pdus": pdus}


def _event_id_param(request: Request) -> str:
    event_id: str | None = request.args.get("event_id")
    if not event_id:
        raise errors.MissingParam("event_id is required")
    return event_id


def _int_field(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise errors.BadJSON(f"{name} must be an integer")
    return value


def _event_ids_field(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        raise errors.BadJSON(f"{name} is required")
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise errors.BadJSON(f"{name} must be a list of event IDs")
    return list(value)


def add_event_routes(blueprint: Blueprint, server_name: str, roomserver: FederationRoomserverAPI) -> None:
    access = RoomAccess(roomserver)

    async def state_before(room_id: str, event_id: str) -> tuple[list[str], list[dict[str, Any]], list[str]]:
        """The state event IDs and PDUs before the event, and the IDs of their auth chain."""
        event = pdu_of(await access.event_in_room(room_id, event_id))
        prev_event_ids = [p for p in event.get("prev_events", []) if isinstance(p, str)]
        # Room versions 1 and 2 list [event_id, hashes] pairs.
        prev_event_ids += [p[0] for p in event.get("prev_events", []) if isinstance(p, list) and p]
        if not prev_event_ids:
            return [], [], []
        answer = await roomserver.query_state_after_events(
            rs_pb.QueryStateAfterEventsRequest(room_id=room_id, prev_event_ids=prev_event_ids))
        if not answer.prev_events_exist:
            raise errors.NotFound(f"The state before {event_id} is not known")
        state_ids = [e.event_id for e in answer.state_events]
        chain = await roomserver.query_auth_chain(rs_pb.QueryAuthChainRequest(event_ids=state_ids))
        return state_ids, [pdu_of(e) for e in answer.state_events], [e.event_id for e in chain.auth_chain]

    async def get_event(request: Request, event_id: str) -> HTTPResponse:
        event = await access.visible_event(event_id, request.ctx.origin)
        return json_response(_transaction(server_name, [pdu_of(event)]))

    async def get_state(request: Request, room_id: str) -> HTTPResponse:
        event_id = _event_id_param(request)
        await access.check_origin_in_room(room_id, request.ctx.origin)
        _, pdus, chain_ids = await state_before(room_id, event_id)
        chain = await roomserver.query_events_by_id(rs_pb.QueryEventsByIDRequest(event_ids=chain_ids))
        return json_response({"pdus": pdus, "auth_chain": [pdu_of(e) for e in chain.events]})

    async def get_state_ids(request: Request, room_id: str) -> HTTPResponse:
        event_id = _event_id_param(request)
        await access.check_origin_in_room(room_id, request.ctx.origin)
        state_ids, _, chain_ids = await state_before(room_id, event_id)
        return json_response({"pdu_ids": state_ids, "auth_chain_ids": chain_ids})

    async def get_event_auth(request: Request, room_id: str, event_id: str) -> HTTPResponse:
        await access.check_origin_in_room(room_id, request.ctx.origin)
        await access.event_in_room(room_id, event_id)
        chain = await roomserver.query_auth_chain(rs_pb.QueryAuthChainRequest(event_ids=[event_id]))
        return json_response({"auth_chain": [pdu_of(e) for e in chain.auth_chain]})

    async def get_backfill(request: Request, room_id: str) -> HTTPResponse:
        origin: str = request.ctx.origin
        starts = request.args.getlist("v", [])
        if not starts:
            raise errors.MissingParam("v is required")
        limit_text = request.args.get("limit")
        if limit_text is None:
            raise errors.MissingParam("limit is required")
        try:
            limit = int(limit_text)
        except ValueError:
            raise errors.InvalidParam("limit must be an integer") from None
        if limit < 1:
            raise errors.InvalidParam("limit must be positive")
        limit = min(limit, MAX_BACKFILL_LIMIT)
        await access.check_origin_in_room(room_id, origin)
        pdus: list[dict[str, Any]] = []
        known: list[str] = []
        for event_id in dict.fromkeys(starts):
            found = await roomserver.query_events_by_id(rs_pb.QueryEventsByIDRequest(event_ids=[event_id]))
            if not found.events or room_id_of(found.events[0]) != room_id:
                continue
            known.append(event_id)
            allowed = await roomserver.query_server_allowed_to_see_event(
                rs_pb.QueryServerAllowedToSeeEventRequest(event_id=event_id, server_name=origin))
            if allowed.allowed and len(pdus) < limit:
                pdus.append(pdu_of(found.events[0]))
        if known and len(pdus) < limit:
            # The walk back along prev events, visibility-filtered by the room server.
            older = await roomserver.query_missing_events(rs_pb.QueryMissingEventsRequest(
                room_id=room_id, latest_events=known, limit=limit - len(pdus), server_name=origin))
            pdus += [pdu_of(e) for e in reversed(older.events)]
        return json_response(_transaction(server_name, pdus))

    async def post_get_missing_events(request: Request, room_id: str) -> HTTPResponse:
        origin: str = request.ctx.origin
        body = parse_json_body(request)
        earliest = _event_ids_field(body, "earliest_events")
        latest = _event_ids_field(body, "latest_events")
        limit = _int_field(body, "limit", DEFAULT_MISSING_EVENTS_LIMIT)
        min_depth = _int_field(body, "min_depth", 0)
        await access.check_origin_in_room(room_id, origin)
        if limit < 1:
            return json_response({"events": []})
        answer = await roomserver.query_missing_events(rs_pb.QueryMissingEventsRequest(
            room_id=room_id, earliest_events=earliest, latest_events=latest, limit=limit, server_name=origin))
        pdus = [pdu_of(e) for e in answer.events]
        pdus = [p for p in pdus if not isinstance(p.get("depth"), int) or p["depth"] >= min_depth]
        return json_response({"events": pdus})

    options: dict[str, Any] = {"unquote": True}
    blueprint.add_route(get_event, f"{V1}/event/<event_id>", methods=["GET"], name="event", **options)
    blueprint.add_route(get_state, f"{V1}/state/<room_id>", methods=["GET"], name="state", **options)
    blueprint.add_route(get_state_ids, f"{V1}/state_ids/<room_id>", methods=["GET"], name="state_ids", **options)
    blueprint.add_route(get_event_auth, f"{V1}/event_auth/<room_id>/<event_id>", methods=["GET"],
                        name="event_auth", **options)
    blueprint.add_route(get_backfill, f"{V1}/backfill/<room_id>", methods=["GET"], name="backfill", **options)
    blueprint.add_route(post_get_missing_events, f"{V1}/get_missing_events/<room_id>", methods=["POST"],
                        name="get_missing_events", **options)
