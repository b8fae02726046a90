"""Shared pieces of the inbound /send and backfill tests: a real in-process
room server and federation API (signing as ``tests.builders``' server, so
the rooms built there are ours), a fake remote server whose key the
KeyRing fetches over TLS and which answers the read endpoints gap filling
and backfill call from a room it holds, and helpers to build the remote's
events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from myelin.roomserver.v1 import output_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.config import Config
from common.http import json_response, make_app, serve_app
from common.log import Log
from common.logs import open_log
from common.topics import ROOMSERVER_OUTPUT
from federationapi.client import FederationClient
from federationapi.component import FederationAPI, open_federationapi
from federationapi.keyring import now_ms
from matrixlib.events import Event
from matrixlib.federation_auth import sign_request
from roomserver.api import RoomserverAPI
from roomserver.component import open_roomserver
from tests.builders import TEST_SERVER_NAME, TEST_SIGNING_KEY, TestRoom
from tests.component.federationapi.conftest import DAY_MS, FakeKeyServer, serve_tls
from tests.fakes.userapi import FakeUserAPI

V1 = "/_matrix/federation/v1"
ALICE = "@alice:test"


def pdu(event: Event) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(event.to_json())
    return parsed


@dataclass
class FakeRemoteRoom:
    """What the fake remote answers about its rooms: every event it has,
    and which it leaves out of /get_missing_events."""

    rooms: dict[str, TestRoom] = field(default_factory=dict)
    missing_events_answer: list[Event] | None = None
    requests: list[str] = field(default_factory=list)

    def room(self, room_id: str) -> TestRoom:
        return self.rooms[room_id]

    def auth_chain(self, room: TestRoom, event_ids: list[str]) -> list[Event]:
        found: dict[str, Event] = {}
        frontier = [a for e in event_ids for a in room.by_id[e].auth_event_ids]
        if room.version.hydra:
            frontier.append(room.create.event_id)
        while frontier:
            event_id = frontier.pop()
            if event_id not in found and event_id in room.by_id:
                found[event_id] = room.by_id[event_id]
                frontier.extend(found[event_id].auth_event_ids)
        return list(found.values())

    def state_before(self, room: TestRoom, event_id: str) -> list[Event]:
        prevs = room.by_id[event_id].prev_event_ids
        state: dict[Any, Event] = {}
        for prev in prevs:
            state.update(room.state_after[prev])
        return list(state.values())

    def add_routes(self, bp: Blueprint) -> None:
        async def get_missing_events(request: Request, room_id: str) -> HTTPResponse:
            self.requests.append("get_missing_events")
            events = self.missing_events_answer or []
            return json_response({"events": [pdu(e) for e in events]})

        async def state_ids(request: Request, room_id: str) -> HTTPResponse:
            self.requests.append("state_ids")
            room = self.room(room_id)
            state = self.state_before(room, request.args["event_id"][0])
            chain = self.auth_chain(room, [e.event_id for e in state])
            return json_response({"pdu_ids": [e.event_id for e in state], "auth_chain_ids": [e.event_id for e in chain]})

        async def state(request: Request, room_id: str) -> HTTPResponse:
            self.requests.append("state")
            room = self.room(room_id)
            events = self.state_before(room, request.args["event_id"][0])
            chain = self.auth_chain(room, [e.event_id for e in events])
            return json_response({"pdus": [pdu(e) for e in events], "auth_chain": [pdu(e) for e in chain]})

        async def event(request: Request, event_id: str) -> HTTPResponse:
            self.requests.append("event")
            for room in self.rooms.values():
                if event_id in room.by_id:
                    return json_response({"origin": "x", "origin_server_ts": 0, "pdus": [pdu(room.by_id[event_id])]})
            return json_response({"errcode": "M_NOT_FOUND", "error": "no"}, status=404)

        async def event_auth(request: Request, room_id: str, event_id: str) -> HTTPResponse:
            self.requests.append("event_auth")
            room = self.room(room_id)
            return json_response({"auth_chain": [pdu(e) for e in self.auth_chain(room, [event_id])]})

        async def backfill(request: Request, room_id: str) -> HTTPResponse:
            self.requests.append("backfill")
            room = self.room(room_id)
            limit = int(request.args["limit"][0])
            frontier = list(request.args.getlist("v"))
            found: dict[str, Event] = {}
            while frontier and len(found) < limit:
                event_id = frontier.pop(0)
                if event_id in found or event_id not in room.by_id:
                    continue
                found[event_id] = room.by_id[event_id]
                frontier.extend(room.by_id[event_id].prev_event_ids)
            return json_response({"origin": "x", "origin_server_ts": 0, "pdus": [pdu(e) for e in found.values()]})

        options: dict[str, Any] = {"unquote": True}
        bp.add_route(get_missing_events, f"{V1}/get_missing_events/<room_id>", methods=["POST"], **options)
        bp.add_route(state_ids, f"{V1}/state_ids/<room_id>", methods=["GET"], **options)
        bp.add_route(state, f"{V1}/state/<room_id>", methods=["GET"], **options)
        bp.add_route(event, f"{V1}/event/<event_id>", methods=["GET"], **options)
        bp.add_route(event_auth, f"{V1}/event_auth/<room_id>/<event_id>", methods=["GET"], **options)
        bp.add_route(backfill, f"{V1}/backfill/<room_id>", methods=["GET"], **options)


@dataclass
class Inbound:
    http: httpx.AsyncClient
    remote: FakeKeyServer
    remote_rooms: FakeRemoteRoom
    roomserver: RoomserverAPI
    federation: FederationAPI
    userapi: FakeUserAPI
    log: Log

    @property
    def origin(self) -> str:
        return self.remote.server_name

    def reset(self) -> None:
        """Forgets what the fake remote was told and asked (between tests)."""
        self.remote_rooms.rooms.clear()
        self.remote_rooms.missing_events_answer = None
        self.remote_rooms.requests.clear()

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.origin}"

    async def call(self, method: str, uri: str, content: Any = None, *, raw: bytes | None = None) -> httpx.Response:
        auth = sign_request(self.remote.key, method=method, uri=uri, origin=self.origin,
                            destination=TEST_SERVER_NAME, content=content)
        body = raw if raw is not None else (None if content is None else json.dumps(content).encode())
        return await self.http.request(method, uri, content=body, headers={"Authorization": auth})

    async def send(self, pdus: list[dict[str, Any]], edus: list[Any] | None = None,
                   txn_id: str | None = None) -> httpx.Response:
        body = {"origin": self.origin, "origin_server_ts": now_ms(), "pdus": pdus, "edus": edus or []}
        return await self.call("PUT", f"{V1}/send/{txn_id or uuid.uuid4().hex}", body)

    async def send_events(self, events: list[Event]) -> dict[str, dict[str, Any]]:
        r = await self.send([pdu(e) for e in events])
        assert r.status_code == 200, r.text
        results: dict[str, dict[str, Any]] = r.json()["pdus"]
        return results

    @contextlib.contextmanager
    def as_remote(self, room: TestRoom) -> Iterator[None]:
        """Events built meanwhile are the remote server's (signed with its key)."""
        saved = room.server_name, room.signing_key
        room.server_name, room.signing_key = self.origin, self.remote.key
        try:
            yield
        finally:
            room.server_name, room.signing_key = saved

    def remote_event(self, room: TestRoom, build: Callable[[], Event]) -> Event:
        with self.as_remote(room):
            return build()

    async def input(self, room: TestRoom, events: list[Event]) -> None:
        answer = await self.roomserver.input_room_events(room.input_request(events))
        assert all(r.outcome == rs_pb.INPUT_OUTCOME_ACCEPTED for r in answer.results), answer

    async def stored(self, event_id: str, *, include_unaccepted: bool = True) -> dict[str, Any] | None:
        answer = await self.roomserver.query_events_by_id(
            rs_pb.QueryEventsByIDRequest(event_ids=[event_id], include_unaccepted=include_unaccepted))
        if not answer.events:
            return None
        found: dict[str, Any] = json.loads(answer.events[0].pdu_json)
        return found

    async def output_event_ids(self) -> set[str]:
        """The IDs of every new room event on the room server's output log so far."""
        consumer = await self.log.consumer(f"test-output-{uuid.uuid4().hex[:8]}", [ROOMSERVER_OUTPUT.name])
        found: set[str] = set()
        try:
            while records := await consumer.fetch(timeout=0.3):
                for record in records:
                    output = output_log_pb2.OutputEvent.FromString(record.value)
                    if output.HasField("new_room_event"):
                        found.add(output.new_room_event.event.event_id)
        finally:
            await consumer.close()
        return found

    async def latest(self, room_id: str) -> list[str]:
        info = await self.roomserver.query_room_info(rs_pb.QueryRoomInfoRequest(room_id=room_id))
        return list(info.latest_event_ids)


def make_config(directory: Path) -> Config:
    return Config(server_name=TEST_SERVER_NAME, data_dir=directory, signing_key_path=directory / "key",
                  federation_verify_tls=False, federation_allow_private_addresses=True,
                  input_timeout_seconds=20.0)


@contextlib.asynccontextmanager
async def start_inbound(tmp_path: Path) -> AsyncIterator[Inbound]:
    """Everything in ``tmp_path``; tests may share one (module-scoped): they
    build rooms of their own, and ``Inbound.reset()`` forgets the fake's state."""
    remote_rooms = FakeRemoteRoom()
    remote = FakeKeyServer(valid_until_ts=now_ms() + DAY_MS, extra_routes=[remote_rooms.add_routes])
    remote_serving = await serve_tls(remote.blueprint(), tmp_path)
    remote.server_name = f"localhost:{remote_serving.port}"
    client = FederationClient(TEST_SERVER_NAME, TEST_SIGNING_KEY, verify_tls=False, allow_private_addresses=True)
    log = open_log(None, tmp_path / "log", "fedsend-test")
    await log.start()
    roomserver = await open_roomserver(make_config(tmp_path / "rs"), log, TEST_SIGNING_KEY)
    task = asyncio.create_task(roomserver.run())
    userapi = FakeUserAPI(TEST_SERVER_NAME)
    component = await open_federationapi(make_config(tmp_path / "fed"), TEST_SIGNING_KEY, client=client,
                                         roomserver=roomserver.api, userapi=userapi, log=log)
    serving = await serve_app(make_app(f"send_{uuid.uuid4().hex[:8]}", [component.make_blueprint()]),
                              "127.0.0.1:0")
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{serving.port}", timeout=60)
    try:
        await asyncio.wait_for(roomserver.ready.wait(), 10)
        yield Inbound(http, remote, remote_rooms, roomserver.api, component, userapi, log)
    finally:
        await http.aclose()
        await serving.stop()
        await component.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await roomserver.close()
        await log.close()
        await remote_serving.stop()
