"""Fakes for the federation sender's tests: remote servers that answer
``PUT /send/{txnId}`` (served over TLS on loopback) and record what they
got, a writer of ``roomserver.output`` entries, and a room server that
answers the two queries the sender makes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from myelin.roomserver.v1 import output_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.http import ServingApp, json_response
from common.log import Log
from common.topics import ROOMSERVER_OUTPUT
from matrixlib.events import Event
from tests.builders import event_proto
from tests.component.federationapi.conftest import serve_tls


@dataclass
class FakeDestination:
    """A remote server's /send: records every request (a retry too);
    ``fail_status`` makes it answer that status instead; ``refuse``
    decides per body whether to answer 400."""

    server_name: str = ""
    fail_status: int | None = None
    refuse: Callable[[dict[str, Any]], bool] | None = None
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # Accepted transactions by ID (a retried ID counts once, as a receiver must).
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    accepted_order: list[str] = field(default_factory=list)
    serving: ServingApp | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def blueprint(self) -> Blueprint:
        bp = Blueprint(f"fake_send_{uuid.uuid4().hex[:8]}")

        async def send(request: Request, txn_id: str) -> HTTPResponse:
            body = request.json
            self.requests.append((txn_id, body))
            self._changed.set()
            if self.fail_status is not None:
                return json_response({"errcode": "M_UNKNOWN", "error": "failing"}, status=self.fail_status)
            if self.refuse is not None and self.refuse(body):
                return json_response({"errcode": "M_BAD_JSON", "error": "refused"}, status=400)
            if txn_id not in self.accepted:
                self.accepted[txn_id] = body
                self.accepted_order.append(txn_id)
            return json_response({"pdus": {}})

        bp.add_route(send, "/_matrix/federation/v1/send/<txn_id>", methods=["PUT"])
        return bp

    async def start(self, cert_dir: Path) -> str:
        self.serving = await serve_tls(self.blueprint(), cert_dir)
        self.server_name = f"localhost:{self.serving.port}"
        return self.server_name

    @property
    def transactions(self) -> list[dict[str, Any]]:
        return [self.accepted[t] for t in self.accepted_order]

    def pdus(self) -> list[dict[str, Any]]:
        return [pdu for body in self.transactions for pdu in body["pdus"]]

    def bodies(self) -> list[str]:
        return [pdu["content"].get("body", "") for pdu in self.pdus()]

    def edus(self) -> list[dict[str, Any]]:
        return [edu for body in self.transactions for edu in body.get("edus", [])]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


class OutputWriter:
    """Writes NewRoomEvent entries as the room server would: each state
    event enters the current state and pushes out the one it replaces."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.positions: dict[str, int] = {}
        self.state: dict[str, dict[tuple[str, str], str]] = {}

    async def write(self, event: Event, *, origin: str = "", historical: bool = False,
                    skip_position: bool = False) -> output_log_pb2.NewRoomEvent:
        room_id = event.room_id
        position = self.positions.get(room_id, 0) + (2 if skip_position else 1)
        self.positions[room_id] = position
        adds: list[str] = []
        removes: list[str] = []
        state = self.state.setdefault(room_id, {})
        if event.state_key is not None and not historical:
            key = (event.type, event.state_key)
            if key in state:
                removes.append(state[key])
            state[key] = event.event_id
            adds.append(event.event_id)
        msg = output_log_pb2.NewRoomEvent(event=event_proto(event), adds_state_event_ids=adds,
                                          removes_state_event_ids=removes, room_stream_position=position,
                                          historical=historical, origin=origin)
        await self.log.append(ROOMSERVER_OUTPUT.name, room_id.encode(),
                              output_log_pb2.OutputEvent(new_room_event=msg).SerializeToString())
        return msg


class FakeRoomserver:
    """The two queries the sender makes, from events the test gives."""

    def __init__(self) -> None:
        self.events: dict[str, Event] = {}
        self.members: dict[str, list[Event]] = {}
        self.membership_queries = 0

    async def query_events_by_id(self, req: rs_pb.QueryEventsByIDRequest) -> rs_pb.QueryEventsByIDResponse:
        return rs_pb.QueryEventsByIDResponse(events=[event_proto(self.events[e]) for e in req.event_ids
                                                     if e in self.events])

    async def query_memberships_for_room(
            self, req: rs_pb.QueryMembershipsForRoomRequest) -> rs_pb.QueryMembershipsForRoomResponse:
        self.membership_queries += 1
        events = self.members.get(req.room_id, [])
        joined = [e for e in events if not req.joined_only or e.content.get("membership") == "join"]
        return rs_pb.QueryMembershipsForRoomResponse(room_exists=True,
                                                     member_events=[event_proto(e) for e in joined])


def pdu_body(pdu: dict[str, Any]) -> str:
    content = pdu.get("content", {})
    return str(content.get("body", "")) if isinstance(content, dict) else ""


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
