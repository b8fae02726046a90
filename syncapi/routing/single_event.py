"""GET /events/{eventId} (deprecated in the spec for
/rooms/{roomId}/event/{eventId}, which older clients still call): the event
if the user may see it, else 404, exactly as the room-scoped endpoint."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.http import json_response
from syncapi.internal.relations import RelationReads
from syncapi.routing.auth import CLIENT_PREFIXES, authenticate
from syncapi.storage.database import SyncDatabase
from userapi.api import AuthenticationAPI


def register(blueprint: Blueprint, database: SyncDatabase, reads: RelationReads,
             userapi: AuthenticationAPI) -> None:
    async def event(request: Request, event_id: str) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        async with database.read() as reader:
            stored = (await reader.events_by_ids([event_id])).get(event_id)
        if stored is None:
            raise errors.NotFound("Event not found")
        return json_response(await reads.event(requester, stored.room_id, event_id))

    for prefix in CLIENT_PREFIXES:
        suffix = prefix.replace("/", "_")
        blueprint.add_route(event, f"{prefix}/events/<event_id>", methods=["GET"], unquote=True,
                            name=f"single_event{suffix}")
