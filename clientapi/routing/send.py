"""PUT /rooms/{roomId}/send/{eventType}/{txnId},
PUT /rooms/{roomId}/redact/{eventId}/{txnId} and
PUT /rooms/{roomId}/state/{eventType}[/{stateKey}].

Spec: data/api/client-server/room_send.yaml, redaction.yaml,
room_state.yaml. A send (or redaction) is one call to the room server
(``PerformSendEvent``), which builds the event and keeps one event per device,
path and transaction ID: a retry answers the first event ID. The sender's
TransactionID goes with the event, so /sync can echo ``unsigned.transaction_id``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from myelin.roomserver.v1 import events_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal import params
from clientapi.internal.aliases import check_canonical_alias
from clientapi.internal.guests import guests_may_join, remove_guests
from clientapi.internal.services import Services, check_input_outcome
from clientapi.routing import client_route
from common import errors, json_codec
from common.eventbuilder import MAX_PDU_BYTES, build_local_event
from common.http import json_response, parse_json_body
from matrixlib.events import CANONICAL_ALIAS, GUEST_ACCESS, REDACTION, Event


def _content_of(request: Request) -> dict[str, Any]:
    if len(request.body or b"") > MAX_PDU_BYTES:
        # The content alone is over the limit of the whole event.
        raise errors.TooLarge(f"event content over {MAX_PDU_BYTES} bytes")
    return parse_json_body(request)


def _check_room_id(room_id: str) -> None:
    if not room_id.startswith("!"):
        raise errors.InvalidParam(f"not a room ID: {room_id!r}")


def _redacts_of(type: str, content: dict[str, Any], redacts: str | None) -> str | None:
    """The event a redaction redacts: the path's, or (room versions 11 and
    later) the content's."""
    if type == REDACTION and redacts is None:
        found = content.get("redacts")
        return found if isinstance(found, str) else None
    return redacts


@contextmanager
def _unknown_room_hidden(sender: str, room_id: str) -> Iterator[None]:
    """An unknown room answers as one the sender is not in: outsiders are
    not told which rooms exist."""
    try:
        yield
    except errors.NotFound:
        raise errors.Forbidden(f"{sender} is not in room {room_id}") from None


async def _build(services: Services, *, room_id: str, sender: str, type: str, content: dict[str, Any],
                 state_key: str | None) -> Event:
    _check_room_id(room_id)
    with _unknown_room_hidden(sender, room_id):
        return await build_local_event(
            services.roomserver, room_id=room_id, type=type, sender=sender, content=content,
            state_key=state_key, server_name=services.server_name, signing_key=services.signing_key,
            redacts=_redacts_of(type, content, None))


async def _send_once(services: Services, device: ua_pb.Device, *, endpoint: str, txn_id: str, room_id: str,
                     type: str, content: dict[str, Any], redacts: str | None = None) -> str:
    """Sends the event unless this device already sent one with this
    transaction ID on this endpoint; either way answers its event ID.

    The room server builds the event on the room's current state, inputs it
    and keeps which event the transaction produced, written with the event
    (``PerformSendEvent``): a retry (after a timeout, after either process
    restarted, or at the same time as the first request through another
    client API) is answered with the first event. Requests of this process
    that reuse an ID wait for each other, and recent answers are kept here."""
    key = (device.user_id, device.device_id, endpoint, txn_id)
    async with services.transaction_lock(*key):
        recent = services.completed_transactions.get(key)
        if recent is not None:
            return recent
        services.send_limiter.check(device.user_id)
        _check_room_id(room_id)
        request = rs_pb.PerformSendEventRequest(
            room_id=room_id, sender=device.user_id, event_type=type, content_json=json_codec.dumps(content),
            redacts=_redacts_of(type, content, redacts) or "", transaction_id=events_pb2.TransactionID(
                user_id=device.user_id, device_id=device.device_id, transaction_id=txn_id, scope=endpoint))
        with _unknown_room_hidden(device.user_id, room_id):
            answer = await services.roomserver.perform_send_event(request)
        check_input_outcome(answer.outcome, answer.reason, answer.event_id)
        services.transaction_done(key, answer.event_id)
        return answer.event_id


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def send_message(request: Request, room_id: str, event_type: str, txn_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        content = _content_of(request)
        event_id = await _send_once(services, device, endpoint=f"send/{room_id}/{event_type}", txn_id=txn_id,
                                    room_id=room_id, type=event_type, content=content)
        return json_response({"event_id": event_id})

    async def redact(request: Request, room_id: str, event_id: str, txn_id: str) -> HTTPResponse:
        device = await services.device_for(request)
        body = _content_of(request) if request.body else {}
        content: dict[str, Any] = {}
        reason = params.optional_str(body, "reason")
        if reason is not None:
            content["reason"] = reason
        if not event_id.startswith("$"):
            raise errors.InvalidParam(f"not an event ID: {event_id!r}")
        redaction_id = await _send_once(services, device, endpoint=f"redact/{room_id}/{event_id}",
                                        txn_id=txn_id, room_id=room_id, type=REDACTION, content=content,
                                        redacts=event_id)
        return json_response({"event_id": redaction_id})

    async def put_state(request: Request, room_id: str, event_type: str, state_key: str = "") -> HTTPResponse:
        device = await services.device_for(request)
        content = _content_of(request)
        services.send_limiter.check(device.user_id)
        if event_type == CANONICAL_ALIAS and state_key == "":
            await check_canonical_alias(services, room_id, content)
        event = await _build(services, room_id=room_id, sender=device.user_id, type=event_type,
                             content=content, state_key=state_key)
        await services.input_events([event])
        if event_type == GUEST_ACCESS and state_key == "" and not guests_may_join(content):
            await remove_guests(services, room_id)
        return json_response({"event_id": event.event_id})

    client_route(blueprint, "/rooms/<room_id>/send/<event_type>/<txn_id>", send_message, ["PUT"],
                 name="send_message")
    client_route(blueprint, "/rooms/<room_id>/redact/<event_id>/<txn_id>", redact, ["PUT"], name="redact")
    client_route(blueprint, "/rooms/<room_id>/state/<event_type>/<state_key>", put_state, ["PUT"],
                 name="put_state")
    client_route(blueprint, "/rooms/<room_id>/state/<event_type>", put_state, ["PUT"],
                 name="put_state_empty_key")
