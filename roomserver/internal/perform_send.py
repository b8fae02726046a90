"""Sending a local user's event (``PerformSendEvent``): the room server builds
it on the room's current forward extremities and state, signs it with the
server's key and inputs it as ``InputRoomEvents`` does.

A writer that built the event itself first asks for the extremities and the
auth state (``QueryLatestEventsAndState``), so every send was two calls to
the room server; here the room server answers that from its own state (from
memory when it is the database's only writer) and the send is one call.

A transaction ID makes the send idempotent: the input processor keeps the
event each (room, user, device, scope, transaction ID) produced, in the
transaction that stores the event, and answers a repeated transaction with
that event (``transaction_key`` in ``input/processor.py``). A retry builds a
new event, which is then not stored."""

from __future__ import annotations

from myelin.roomserver.v1 import events_pb2, input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as pb

from common import errors, json_codec
from common.built_events import note_built
from common.eventbuilder import build_local_event
from matrixlib.signing import SigningKey
from roomserver.api import InputAPI, StateQueryAPI


class LocalEventSender:
    def __init__(self, queries: StateQueryAPI, inputer: InputAPI, server_name: str,
                 signing_key: SigningKey) -> None:
        self._queries = queries
        self._inputer = inputer
        self._server_name = server_name
        self._signing_key = signing_key

    async def perform_send_event(self, req: pb.PerformSendEventRequest) -> pb.PerformSendEventResponse:
        if not req.room_id.startswith("!"):
            raise errors.InvalidParam(f"not a room ID: {req.room_id!r}")
        if not req.sender.startswith("@") or req.sender.partition(":")[2] != self._server_name:
            # Signed with this server's key: only its own users' events.
            raise errors.InvalidParam(f"not a local user: {req.sender!r}")
        if not req.event_type:
            raise errors.InvalidParam("no event type")
        try:
            content = json_codec.loads(req.content_json or b"{}")
        except ValueError as e:
            raise errors.NotJSON(f"the content is not JSON: {e}") from None
        if not isinstance(content, dict):
            raise errors.BadJSON("the content must be a JSON object")
        event = await build_local_event(
            self._queries, room_id=req.room_id, type=req.event_type, sender=req.sender, content=content,
            state_key=req.state_key if req.HasField("state_key") else None, server_name=self._server_name,
            signing_key=self._signing_key, redacts=req.redacts or None)
        # The input processor takes the event back instead of parsing its JSON again.
        note_built(event)
        answer = await self._inputer.input_room_events(pb.InputRoomEventsRequest(wait=True, events=[
            input_log_pb2.InputRoomEvent(
                kind=input_log_pb2.INPUT_KIND_NEW,
                event=events_pb2.Event(event_id=event.event_id, room_version=event.room_version.identifier,
                                       pdu_json=event.to_json()),
                transaction_id=req.transaction_id if req.HasField("transaction_id") else None)]))
        if len(answer.results) != 1:
            raise errors.MatrixError(f"the input of {event.event_id} gave {len(answer.results)} results")
        result = answer.results[0]
        return pb.PerformSendEventResponse(event_id=result.transaction_event_id or event.event_id,
                                           outcome=result.outcome, reason=result.reason)
