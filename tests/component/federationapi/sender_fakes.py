"""Fakes for the federation sender's tests: remote servers that answer
``PUT /send/{txnId}`` (served over TLS on loopback) and record what they
got, a writer of ``roomserver.output`` entries, and a room server that
answers the two queries the sender makes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from myelin.roomserver.v1 import output_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.http import ServingApp, json_response
from common.log import Log
from common.logs import open_log
from common.storage import Database, open_database
from common.topics import ROOMSERVER_OUTPUT
from federationapi.client import FederationClient
from federationapi.sender.sender import FederationSender, build_sender
from matrixlib.events import Event
from roomserver.api import FederationRoomserverAPI
from tests.builders import TestRoom, event_proto
from tests.component.federationapi.conftest import OUR_KEY, OUR_NAME, federation_database_url, serve_tls


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


ALICE = f"@alice:{OUR_NAME}"


@dataclass
class Env:
    tmp_path: Path
    db: Database
    client: FederationClient
    output: OutputWriter
    roomserver: FakeRoomserver
    log: Any
    sender: FederationSender | None = None
    task: asyncio.Task[None] | None = None
    fakes: list[FakeDestination] = field(default_factory=list)

    async def start_sender(self, backoff_initial: float = 0.05, backoff_max: float = 0.2) -> FederationSender:
        self.sender = build_sender(self.db, self.client, self.log, cast(FederationRoomserverAPI, self.roomserver),
                                   OUR_NAME, backoff_initial=backoff_initial, backoff_max=backoff_max)
        self.task = asyncio.create_task(self.sender.run())
        await asyncio.wait_for(self.sender.ready.wait(), 20)
        return self.sender

    async def stop_sender(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        if self.sender is not None:
            await self.sender.close()
            self.sender = None

    async def destination(self, **kwargs: Any) -> FakeDestination:
        fake = FakeDestination(**kwargs)
        await fake.start(self.tmp_path)
        self.fakes.append(fake)
        return fake


@pytest.fixture
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """On SQLite, or on each database for a test ``on_each_database``."""
    db = await open_database(federation_database_url(request, tmp_path), "federationapi")
    log = open_log(None, tmp_path / "log", "test")
    await log.start()
    client = FederationClient(OUR_NAME, OUR_KEY, verify_tls=False, allow_private_addresses=True)
    e = Env(tmp_path, db, client, OutputWriter(log), FakeRoomserver(), log)
    try:
        yield e
    finally:
        await e.stop_sender()
        for fake in e.fakes:
            if fake.serving is not None:
                await fake.serving.stop()
        await client.close()
        await log.close()
        await db.close()


async def room_with(env: Env, *remote_users: str, version: str = "10") -> TestRoom:
    """A room of ours whose remote members joined (their joins came over federation)."""
    room = TestRoom(version, creator=ALICE, server_name=OUR_NAME)
    for event in room.events:
        await env.output.write(event)
    for user in remote_users:
        await env.output.write(room.join(user), origin=user.split(":", 1)[1])
    return room


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Polls what only the database can tell (no event to await for it)."""
    for _ in range(int(timeout / 0.02)):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition did not hold in time")
