"""POST /rooms/{roomId}/report/{eventId}, POST /rooms/{roomId}/report and
POST /users/{userId}/report (data/api/client-server/report_content.yaml).

An event can be reported by a user joined to its room who may see it; any
other case, and an unknown event, is 404 M_NOT_FOUND (the spec's answer for
"not found or not joined"). A room can be reported by anyone, 404 when this
server does not know it; a user too (a local user must exist, 404
otherwise). Reports are stored for the server's admins.
"""

from __future__ import annotations

import time
import uuid
from typing import Protocol, runtime_checkable

from myelin.roomserver.v1 import events_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.membership import current_membership
from clientapi.internal.services import Services
from clientapi.routing import client_route
from clientapi.storage.tables.reports import EventReport, RoomReport, UserReport
from common import errors
from common.http import json_response, parse_json_body
from matrixlib.events import Event
from matrixlib.room_versions import get_room_version

MAX_REASON_CHARS = 1000


@runtime_checkable
class _UserVisibility(Protocol):
    """The room server's history-visibility check (the real room server over
    either binding has it; the client API's cut of the interface does not name it)."""

    async def query_user_allowed_to_see_event(
        self, req: rs_pb.QueryUserAllowedToSeeEventRequest) -> rs_pb.QueryAllowedToSeeEventResponse: ...


def _reason(body: dict[str, object], *, required: bool) -> str | None:
    reason = body.get("reason")
    if reason is None:
        if required:
            raise errors.MissingParam("Missing parameter: reason")
        return None
    if not isinstance(reason, str):
        raise errors.BadJSON("reason must be a string")
    if len(reason) > MAX_REASON_CHARS:
        raise errors.BadJSON(f"reason must be at most {MAX_REASON_CHARS} characters")
    return reason


def _room_of(event: events_pb2.Event) -> str | None:
    try:
        return Event.from_json(event.pdu_json, get_room_version(event.room_version), event.event_id).room_id
    except Exception:
        return None


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def report_event(request: Request, room_id: str, event_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request)
        reason = _reason(body, required=False)
        score = body.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, int)
                                  or not -100 <= score <= 0):
            raise errors.InvalidParam("score must be an integer between -100 and 0")
        not_found = errors.NotFound("The event was not found or you are not joined to its room")
        membership = await current_membership(services, room_id, device.user_id)
        if not membership.room_exists or membership.membership != "join":
            raise not_found
        found = await services.roomserver.query_events_by_id(rs_pb.QueryEventsByIDRequest(event_ids=[event_id]))
        if not any(e.event_id == event_id and _room_of(e) == room_id for e in found.events):
            raise not_found
        if isinstance(services.roomserver, _UserVisibility):
            allowed = await services.roomserver.query_user_allowed_to_see_event(
                rs_pb.QueryUserAllowedToSeeEventRequest(event_id=event_id, user_id=device.user_id))
            if not allowed.allowed:
                raise not_found
        await services.database.store_event_report(EventReport(
            report_id=uuid.uuid4().hex, room_id=room_id, event_id=event_id, user_id=device.user_id,
            reason=reason, score=score, received_ts=int(time.time() * 1000)))
        return json_response({})

    async def report_room(request: Request, room_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request)
        reason = _reason(body, required=True)
        assert reason is not None
        info = await services.roomserver.query_room_info(rs_pb.QueryRoomInfoRequest(room_id=room_id))
        if not info.room_exists:
            raise errors.NotFound("The room was not found")
        await services.database.store_room_report(RoomReport(
            report_id=uuid.uuid4().hex, room_id=room_id, user_id=device.user_id, reason=reason,
            received_ts=int(time.time() * 1000)))
        return json_response({})

    async def report_user(request: Request, user_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request)
        reason = _reason(body, required=True)
        assert reason is not None
        if not user_id.startswith("@") or ":" not in user_id:
            raise errors.InvalidParam("Not a user ID")
        if user_id.partition(":")[2] == services.server_name:
            # A local user must exist; a remote one cannot be checked from here.
            await services.userapi.query_profile(ua_pb.QueryProfileRequest(user_id=user_id))
        await services.database.store_user_report(UserReport(
            report_id=uuid.uuid4().hex, target_user_id=user_id, user_id=device.user_id, reason=reason,
            received_ts=int(time.time() * 1000)))
        return json_response({})

    client_route(blueprint, "/rooms/<room_id>/report/<event_id>", report_event, ["POST"], name="report_event")
    client_route(blueprint, "/rooms/<room_id>/report", report_room, ["POST"], name="report_room")
    client_route(blueprint, "/users/<user_id>/report", report_user, ["POST"], name="report_user")
