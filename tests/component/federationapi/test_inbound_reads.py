"""The federation API's inbound read endpoints against a real in-process
room server holding real rooms (tests.builders.TestRoom), with
X-Matrix-signed requests from a fake remote server whose key the KeyRing
fetches from its key server over TLS."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2 as user_pb

from clientapi.component import build as build_clientapi
from clientapi.component import open_clientapi_database
from clientapi.routing.directory import PublishedRoomDirectory
from clientapi.storage.database import ClientAPIDatabase
from common import errors
from common.config import Config
from common.http import make_app, serve_app
from common.logs import open_log
from federationapi.component import open_federationapi
from federationapi.internal.public_rooms import ClientAPIPublicRooms
from federationapi.keyring import now_ms
from matrixlib.events import CREATE, HISTORY_VISIBILITY, JOIN_RULES, MEMBER, POWER_LEVELS, SERVER_ACL, Event
from matrixlib.federation_auth import sign_request
from matrixlib.hashes import compute_event_id
from roomserver.api import RoomserverAPI
from roomserver.component import open_roomserver
from roomserver.grpc.client import GrpcRoomserverClient, roomserver_channel
from roomserver.grpc.server import serve_grpc
from tests.builders import TEST_SERVER_NAME, TEST_SIGNING_KEY, TestRoom
from tests.component.federationapi.conftest import DAY_MS, OUR_KEY, FakeKeyServer, Harness
from tests.contract.openapi_spec import SPEC_ROOT, ClientServerSpec
from tests.fakes.userapi import FakeUserAPI

V1 = "/_matrix/federation/v1"
ALICE = "@alice:test"


def q(value: str) -> str:
    return quote(value, safe="")


@dataclass
class Reads:
    http: httpx.AsyncClient
    remote: FakeKeyServer
    roomserver: RoomserverAPI
    userapi: FakeUserAPI
    directory_db: ClientAPIDatabase

    @property
    def bob(self) -> str:
        return f"@bob:{self.remote.server_name}"

    async def call(self, method: str, uri: str, content: Any = None) -> httpx.Response:
        auth = sign_request(self.remote.key, method=method, uri=uri, origin=self.remote.server_name,
                            destination=TEST_SERVER_NAME, content=content)
        body = None if content is None else json.dumps(content).encode()
        return await self.http.request(method, uri, content=body, headers={"Authorization": auth})

    async def input(self, room: TestRoom, events: list[Event]) -> None:
        answer = await self.roomserver.input_room_events(room.input_request(events))
        assert all(r.outcome == rs_pb.INPUT_OUTCOME_ACCEPTED for r in answer.results), answer


def config(harness: Harness, name: str) -> Config:
    directory = harness.tmp_path / name
    return Config(server_name=TEST_SERVER_NAME, data_dir=directory, signing_key_path=directory / "key",
                  federation_verify_tls=False, federation_allow_private_addresses=True,
                  input_timeout_seconds=20.0)


@pytest.fixture
async def reads(request: pytest.FixtureRequest, harness: Harness) -> AsyncIterator[Reads]:
    """The room server in process, or over its gRPC binding when
    parametrized indirectly with "grpc"."""
    remote = FakeKeyServer(valid_until_ts=now_ms() + DAY_MS)
    await harness.start(remote)
    log = open_log(None, harness.tmp_path / "log", "fedreads-test")
    await log.start()
    roomserver = await open_roomserver(config(harness, "rs"), log, TEST_SIGNING_KEY)
    task = asyncio.create_task(roomserver.run())
    api: RoomserverAPI = roomserver.api
    grpc_server: grpc.aio.Server | None = None
    channel: grpc.aio.Channel | None = None
    if getattr(request, "param", "inprocess") == "grpc":
        grpc_server, port = await serve_grpc(roomserver.api, "127.0.0.1:0")
        channel = roomserver_channel(f"127.0.0.1:{port}")
        api = GrpcRoomserverClient(channel)
    client_db = await open_clientapi_database(config(harness, "client"))
    directory_db = ClientAPIDatabase(client_db)
    userapi = FakeUserAPI(TEST_SERVER_NAME)
    component = await open_federationapi(
        config(harness, "fed"), OUR_KEY, client=harness.client, roomserver=api, userapi=userapi,
        public_rooms=PublishedRoomDirectory(api, directory_db))
    serving = await serve_app(make_app(f"reads_{uuid.uuid4().hex[:8]}", [component.make_blueprint()]),
                              "127.0.0.1:0")
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{serving.port}")
    try:
        await asyncio.wait_for(roomserver.ready.wait(), 10)
        yield Reads(http, remote, api, userapi, directory_db)
    finally:
        await http.aclose()
        await serving.stop()
        await component.close()
        await client_db.close()
        if channel is not None and grpc_server is not None:
            await channel.close()
            await grpc_server.stop(None)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await roomserver.close()
        await log.close()


@dataclass
class SharedRoom:
    room: TestRoom
    before_join: Event
    bob_join: Event
    after: list[Event]


async def shared_room(reads: Reads, history_visibility: str = "joined", room_version: str = "12") -> SharedRoom:
    """A room the remote's user joined, with history only members see."""
    room = TestRoom(room_version, history_visibility=history_visibility)
    before = room.message(ALICE, "before bob")
    join = room.join(reads.bob)
    after = [room.message(ALICE, f"m{i}") for i in range(3)]
    await reads.input(room, room.events)
    return SharedRoom(room, before, join, after)


async def other_room(reads: Reads, history_visibility: str) -> TestRoom:
    """A room without the remote's users."""
    room = TestRoom(history_visibility=history_visibility)
    room.message(ALICE, "private")
    await reads.input(room, room.events)
    return room


def event_id_of(pdu: dict[str, Any], room: TestRoom) -> str:
    return compute_event_id(pdu, room.version)


def auth_closure(room: TestRoom, event_ids: list[str]) -> set[str]:
    # Room version 12 events do not list the create event; it is still part of the chain.
    found: set[str] = {room.create.event_id} if room.version.hydra else set()
    frontier = [a for e in event_ids for a in room.by_id[e].auth_event_ids]
    while frontier:
        event_id = frontier.pop()
        if event_id not in found:
            found.add(event_id)
            frontier.extend(room.by_id[event_id].auth_event_ids)
    return found


def assert_error(r: httpx.Response, status: int, errcode: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["errcode"] == errcode, r.text


async def test_event_is_the_signed_pdu_in_a_transaction(reads: Reads) -> None:
    shared = await shared_room(reads)
    target = shared.after[0]
    r = await reads.call("GET", f"{V1}/event/{q(target.event_id)}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["origin"] == TEST_SERVER_NAME and isinstance(body["origin_server_ts"], int)
    assert body["pdus"] == [json.loads(target.to_json())]
    assert event_id_of(body["pdus"][0], shared.room) == target.event_id


async def test_event_visibility_and_unknown(reads: Reads) -> None:
    shared = await shared_room(reads)
    # Before the remote's user joined, "joined" history is not the remote's to see.
    assert_error(await reads.call("GET", f"{V1}/event/{q(shared.before_join.event_id)}"), 403, "M_FORBIDDEN")
    private = await other_room(reads, "joined")
    assert_error(await reads.call("GET", f"{V1}/event/{q(private.events[-1].event_id)}"), 403, "M_FORBIDDEN")
    readable = await other_room(reads, "world_readable")
    r = await reads.call("GET", f"{V1}/event/{q(readable.events[-1].event_id)}")
    assert r.status_code == 200, r.text
    assert_error(await reads.call("GET", f"{V1}/event/{q('$nope')}"), 404, "M_NOT_FOUND")


async def test_unauthenticated_requests_are_401(reads: Reads) -> None:
    shared = await shared_room(reads)
    for uri in (f"{V1}/event/{q(shared.after[0].event_id)}",
                f"{V1}/state_ids/{q(shared.room.room_id)}?event_id={q(shared.after[0].event_id)}",
                f"{V1}/query/profile?user_id={q(ALICE)}", f"{V1}/publicRooms"):
        assert_error(await reads.http.get(uri), 401, "M_UNAUTHORIZED")


# Room version 1 lists prev events as [ID, hashes] pairs; version 3 IDs may hold "/".
@pytest.mark.parametrize("room_version", ["1", "3", "12"])
async def test_state_and_state_ids_are_the_state_before_the_event(reads: Reads, room_version: str) -> None:
    shared = await shared_room(reads, room_version=room_version)
    room, target = shared.room, shared.after[1]
    r = await reads.call("GET", f"{V1}/event/{q(target.event_id)}")
    assert r.status_code == 200, r.text
    assert event_id_of(r.json()["pdus"][0], room) == target.event_id
    r = await reads.call("GET", f"{V1}/event_auth/{q(room.room_id)}/{q(target.event_id)}")
    assert r.status_code == 200, r.text
    expected_state = {e.event_id for e in room.state_after[target.prev_event_ids[0]].values()}
    assert shared.bob_join.event_id in expected_state
    r = await reads.call("GET", f"{V1}/state_ids/{q(room.room_id)}?event_id={q(target.event_id)}")
    assert r.status_code == 200, r.text
    ids = r.json()
    assert set(ids["pdu_ids"]) == expected_state
    assert set(ids["auth_chain_ids"]) == auth_closure(room, sorted(expected_state))

    r = await reads.call("GET", f"{V1}/state/{q(room.room_id)}?event_id={q(target.event_id)}")
    assert r.status_code == 200, r.text
    full = r.json()
    assert {event_id_of(p, room) for p in full["pdus"]} == expected_state
    assert {event_id_of(p, room) for p in full["auth_chain"]} == set(ids["auth_chain_ids"])
    # The create event has no state before it.
    r = await reads.call("GET", f"{V1}/state_ids/{q(room.room_id)}?event_id={q(room.create.event_id)}")
    assert r.status_code == 200, r.text
    assert r.json() == {"pdu_ids": [], "auth_chain_ids": []}


async def test_state_errors(reads: Reads) -> None:
    shared = await shared_room(reads)
    room_id, event_id = shared.room.room_id, shared.after[0].event_id
    for kind in ("state", "state_ids"):
        assert_error(await reads.call("GET", f"{V1}/{kind}/{q(room_id)}"), 400, "M_MISSING_PARAM")
        assert_error(await reads.call("GET", f"{V1}/{kind}/{q('!nope:test')}?event_id={q(event_id)}"),
                     404, "M_NOT_FOUND")
        assert_error(await reads.call("GET", f"{V1}/{kind}/{q(room_id)}?event_id={q('$nope')}"), 404, "M_NOT_FOUND")
    private = await other_room(reads, "world_readable")
    for kind in ("state", "state_ids"):
        r = await reads.call("GET", f"{V1}/{kind}/{q(private.room_id)}?event_id={q(private.events[-1].event_id)}")
        assert_error(r, 403, "M_FORBIDDEN")
    r = await reads.call("GET", f"{V1}/event_auth/{q(private.room_id)}/{q(private.events[-1].event_id)}")
    assert_error(r, 403, "M_FORBIDDEN")


async def test_event_auth_is_the_auth_chain(reads: Reads) -> None:
    shared = await shared_room(reads)
    room, target = shared.room, shared.after[2]
    r = await reads.call("GET", f"{V1}/event_auth/{q(room.room_id)}/{q(target.event_id)}")
    assert r.status_code == 200, r.text
    chain = {event_id_of(p, room) for p in r.json()["auth_chain"]}
    assert chain == auth_closure(room, [target.event_id])
    assert shared.bob_join.event_id not in chain and room.create.event_id in chain
    r = await reads.call("GET", f"{V1}/event_auth/{q(room.room_id)}/{q('$nope')}")
    assert_error(r, 404, "M_NOT_FOUND")


async def test_backfill_walks_back_from_the_given_events_visible_ones_only(reads: Reads) -> None:
    shared = await shared_room(reads)
    room, last = shared.room, shared.after[-1]
    uri = f"{V1}/backfill/{q(room.room_id)}?v={q(last.event_id)}"
    r = await reads.call("GET", f"{uri}&limit=2")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["origin"] == TEST_SERVER_NAME
    assert [event_id_of(p, room) for p in body["pdus"]] == [last.event_id, shared.after[-2].event_id]
    r = await reads.call("GET", f"{uri}&limit=50")
    assert r.status_code == 200, r.text
    got = {event_id_of(p, room) for p in r.json()["pdus"]}
    # Everything from the remote's join on, and the events before the room's
    # history visibility was set (the default, "shared", shows them to all);
    # not the history visibility event and the message only members saw.
    assert [e.type for e in room.events[:5]] == [CREATE, MEMBER, POWER_LEVELS, JOIN_RULES, HISTORY_VISIBILITY]
    assert got == {*(e.event_id for e in room.events[:4]), shared.bob_join.event_id,
                   *(e.event_id for e in shared.after)}
    assert_error(await reads.call("GET", uri), 400, "M_MISSING_PARAM")
    assert_error(await reads.call("GET", f"{uri}&limit=x"), 400, "M_INVALID_PARAM")
    assert_error(await reads.call("GET", f"{V1}/backfill/{q(room.room_id)}?limit=3"), 400, "M_MISSING_PARAM")
    private = await other_room(reads, "joined")
    r = await reads.call("GET", f"{V1}/backfill/{q(private.room_id)}?v={q(private.events[-1].event_id)}&limit=5")
    assert_error(r, 403, "M_FORBIDDEN")


async def test_get_missing_events(reads: Reads) -> None:
    shared = await shared_room(reads)
    room = shared.room
    uri = f"{V1}/get_missing_events/{q(room.room_id)}"
    body = {"earliest_events": [shared.bob_join.event_id], "latest_events": [shared.after[-1].event_id],
            "limit": 10}
    r = await reads.call("POST", uri, body)
    assert r.status_code == 200, r.text
    assert [event_id_of(p, room) for p in r.json()["events"]] == [e.event_id for e in shared.after[:-1]]
    r = await reads.call("POST", uri, {**body, "min_depth": shared.after[1].depth})
    assert [event_id_of(p, room) for p in r.json()["events"]] == [shared.after[1].event_id]
    assert_error(await reads.call("POST", uri, {"latest_events": []}), 400, "M_BAD_JSON")
    assert_error(await reads.call("POST", uri, {**body, "limit": "ten"}), 400, "M_BAD_JSON")
    private = await other_room(reads, "joined")
    r = await reads.call("POST", f"{V1}/get_missing_events/{q(private.room_id)}",
                         {"earliest_events": [], "latest_events": [private.events[-1].event_id]})
    assert_error(r, 403, "M_FORBIDDEN")


async def test_server_acl_refuses_a_banned_origin(reads: Reads) -> None:
    shared = await shared_room(reads)
    room, target = shared.room, shared.after[0]
    state_uri = f"{V1}/state_ids/{q(room.room_id)}?event_id={q(target.event_id)}"
    event_uri = f"{V1}/event/{q(target.event_id)}"
    assert (await reads.call("GET", state_uri)).status_code == 200
    acl = room.set_state(SERVER_ACL, {"allow": ["*"], "deny": ["localhost"]}, sender=ALICE)
    await reads.input(room, [acl])
    assert_error(await reads.call("GET", state_uri), 403, "M_FORBIDDEN")
    assert_error(await reads.call("GET", event_uri), 403, "M_FORBIDDEN")
    r = await reads.call("POST", f"{V1}/get_missing_events/{q(room.room_id)}",
                         {"earliest_events": [], "latest_events": [acl.event_id]})
    assert_error(r, 403, "M_FORBIDDEN")


async def test_query_profile(reads: Reads) -> None:
    reads.userapi.profiles[ALICE] = user_pb.Profile(user_id=ALICE, display_name="Alice", avatar_url="mxc://test/a")
    reads.userapi.profiles["@carol:test"] = user_pb.Profile(user_id="@carol:test")
    uri = f"{V1}/query/profile?user_id={q(ALICE)}"
    r = await reads.call("GET", uri)
    assert r.status_code == 200, r.text
    assert r.json() == {"displayname": "Alice", "avatar_url": "mxc://test/a"}
    r = await reads.call("GET", f"{uri}&field=displayname")
    assert r.json() == {"displayname": "Alice"}
    r = await reads.call("GET", f"{V1}/query/profile?user_id={q('@carol:test')}")
    assert r.status_code == 200 and r.json() == {}
    assert_error(await reads.call("GET", f"{uri}&field=nope"), 404, "M_NOT_FOUND")
    assert_error(await reads.call("GET", f"{V1}/query/profile?user_id={q('@nobody:test')}"), 404, "M_NOT_FOUND")
    assert_error(await reads.call("GET", f"{V1}/query/profile"), 400, "M_MISSING_PARAM")
    assert_error(await reads.call("GET", f"{V1}/query/profile?user_id=alice"), 400, "M_INVALID_PARAM")


async def test_query_directory(reads: Reads) -> None:
    shared = await shared_room(reads)
    await reads.roomserver.set_room_alias(rs_pb.SetRoomAliasRequest(
        alias="#shared:test", room_id=shared.room.room_id, creator=ALICE))
    r = await reads.call("GET", f"{V1}/query/directory?room_alias={q('#shared:test')}")
    assert r.status_code == 200, r.text
    assert r.json()["room_id"] == shared.room.room_id
    assert r.json()["servers"][0] == TEST_SERVER_NAME
    assert set(r.json()["servers"]) == {TEST_SERVER_NAME, reads.remote.server_name}
    assert_error(await reads.call("GET", f"{V1}/query/directory?room_alias={q('#nope:test')}"), 404, "M_NOT_FOUND")
    assert_error(await reads.call("GET", f"{V1}/query/directory"), 400, "M_MISSING_PARAM")
    assert_error(await reads.call("GET", f"{V1}/query/directory?room_alias=nope"), 400, "M_INVALID_PARAM")


async def test_public_rooms(reads: Reads) -> None:
    published = TestRoom()
    published.set_state("m.room.name", {"name": "Federated lounge"}, sender=ALICE)
    hidden = TestRoom()
    for room in (published, hidden):
        await reads.input(room, room.events)
    await reads.directory_db.set_room_published(published.room_id, True)
    r = await reads.call("GET", f"{V1}/publicRooms?limit=10")
    assert r.status_code == 200, r.text
    assert [c["room_id"] for c in r.json()["chunk"]] == [published.room_id]
    assert r.json()["chunk"][0]["name"] == "Federated lounge"
    r = await reads.call("POST", f"{V1}/publicRooms", {"filter": {"generic_search_term": "lounge"}})
    assert [c["room_id"] for c in r.json()["chunk"]] == [published.room_id]
    r = await reads.call("POST", f"{V1}/publicRooms", {"filter": {"generic_search_term": "kitchen"}})
    assert r.status_code == 200 and r.json()["chunk"] == []
    assert_error(await reads.call("POST", f"{V1}/publicRooms", {"limit": "x"}), 400, "M_BAD_JSON")
    assert_error(await reads.call("GET", f"{V1}/publicRooms?limit=x"), 400, "M_INVALID_PARAM")


async def test_split_mode_directory_reads_the_client_apis_public_rooms(reads: Reads, harness: Harness) -> None:
    """``ClientAPIPublicRooms`` (the split deployment's directory) against
    the real client API's GET /publicRooms on the same published list."""
    rooms = []
    for name in ("Alpha lounge", "Beta lounge", "Gamma kitchen"):
        room = TestRoom()
        room.set_state("m.room.name", {"name": name}, sender=ALICE)
        await reads.input(room, room.events)
        await reads.directory_db.set_room_published(room.room_id, True)
        rooms.append(room)
    clientapi = build_clientapi(config(harness, "client"), reads.directory_db.db, None, reads.roomserver,
                                reads.userapi, TEST_SIGNING_KEY)
    serving = await serve_app(make_app(f"client_{uuid.uuid4().hex[:8]}", [clientapi.blueprint]), "127.0.0.1:0")
    directory = ClientAPIPublicRooms(f"127.0.0.1:{serving.port}")
    try:
        everything = await directory.public_rooms(limit=10, since=None, search_term=None, room_types=None)
        assert {c["room_id"] for c in everything["chunk"]} == {r.room_id for r in rooms}
        first = await directory.public_rooms(limit=1, since=None, search_term="lounge", room_types=None)
        assert first["total_room_count_estimate"] == 2 and len(first["chunk"]) == 1
        second = await directory.public_rooms(limit=1, since=first["next_batch"], search_term="lounge",
                                              room_types=None)
        assert "next_batch" not in second
        lounges = {first["chunk"][0]["name"], second["chunk"][0]["name"]}
        assert lounges == {"Alpha lounge", "Beta lounge"}
        spaces = await directory.public_rooms(limit=10, since=None, search_term=None, room_types=["m.space"])
        assert spaces["chunk"] == []
        with pytest.raises(errors.InvalidParam):
            await directory.public_rooms(limit=10, since="bad", search_term="x", room_types=None)
    finally:
        await directory.close()
        await serving.stop()
        await clientapi.close()


async def test_room_version_3_event_ids_with_slashes(reads: Reads) -> None:
    shared = await shared_room(reads, room_version="3")
    room = shared.room
    # Only events from the remote's join on are the remote's to see.
    slashed = next((e for e in [shared.bob_join, *shared.after] if "/" in e.event_id), None)
    while slashed is None:
        # About half of all version 3 IDs hold a "/"; keep sending until one does.
        message = room.message(ALICE, "again")
        await reads.input(room, [message])
        slashed = message if "/" in message.event_id else None
    r = await reads.call("GET", f"{V1}/event/{q(slashed.event_id)}")
    assert r.status_code == 200, r.text
    assert event_id_of(r.json()["pdus"][0], room) == slashed.event_id
    r = await reads.call("GET", f"{V1}/event_auth/{q(room.room_id)}/{q(slashed.event_id)}")
    assert r.status_code == 200, r.text
    r = await reads.call("GET", f"{V1}/state_ids/{q(room.room_id)}?event_id={q(slashed.event_id)}")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("reads", ["grpc"], indirect=True)
async def test_over_the_room_servers_grpc_binding(reads: Reads) -> None:
    shared = await shared_room(reads)
    room, target = shared.room, shared.after[1]
    r = await reads.call("GET", f"{V1}/event/{q(target.event_id)}")
    assert r.status_code == 200 and event_id_of(r.json()["pdus"][0], room) == target.event_id
    assert_error(await reads.call("GET", f"{V1}/event/{q(shared.before_join.event_id)}"), 403, "M_FORBIDDEN")
    r = await reads.call("GET", f"{V1}/state_ids/{q(room.room_id)}?event_id={q(target.event_id)}")
    assert set(r.json()["pdu_ids"]) == {e.event_id for e in room.state_after[target.prev_event_ids[0]].values()}
    r = await reads.call("POST", f"{V1}/get_missing_events/{q(room.room_id)}",
                         {"earliest_events": [shared.bob_join.event_id], "latest_events": [target.event_id]})
    assert [event_id_of(p, room) for p in r.json()["events"]] == [shared.after[0].event_id]
    assert_error(await reads.call("GET", f"{V1}/state_ids/{q('!nope:test')}?event_id={q(target.event_id)}"),
                 404, "M_NOT_FOUND")
    await reads.roomserver.set_room_alias(rs_pb.SetRoomAliasRequest(
        alias="#g:test", room_id=room.room_id, creator=ALICE))
    r = await reads.call("GET", f"{V1}/query/directory?room_alias={q('#g:test')}")
    assert r.json()["room_id"] == room.room_id


@functools.cache
def server_server_spec() -> ClientServerSpec:
    # The vendored spec's server-server descriptions (tests/contract/matrix_spec);
    # their errors are the client-server API's error object.
    spec = ClientServerSpec(SPEC_ROOT / "data" / "api" / "server-server")
    spec.error_schema = SPEC_ROOT / "data" / "api" / "client-server" / "definitions" / "errors" / "error.yaml"
    return spec


def assert_matches_spec(method: str, spec_path: str, r: httpx.Response) -> None:
    spec = server_server_spec()
    [operation] = [o for o in spec.operations if o.key == f"{method} {V1}{spec_path}"]
    problems = spec.validate_response(operation, r.status_code, r.json())
    assert not problems, f"{method} {spec_path} {r.status_code}: {problems}"


async def test_answers_match_the_spec(reads: Reads) -> None:
    shared = await shared_room(reads)
    room, target = shared.room, shared.after[1]
    reads.userapi.profiles[ALICE] = user_pb.Profile(user_id=ALICE, display_name="Alice", avatar_url="mxc://test/a")
    await reads.roomserver.set_room_alias(rs_pb.SetRoomAliasRequest(
        alias="#spec:test", room_id=room.room_id, creator=ALICE))
    await reads.directory_db.set_room_published(room.room_id, True)
    room_id, event_id = q(room.room_id), q(target.event_id)
    answers = [
        ("GET", "/event/{eventId}", await reads.call("GET", f"{V1}/event/{event_id}"), 200),
        ("GET", "/event/{eventId}", await reads.call("GET", f"{V1}/event/{q('$nope')}"), 404),
        ("GET", "/state/{roomId}", await reads.call("GET", f"{V1}/state/{room_id}?event_id={event_id}"), 200),
        ("GET", "/state_ids/{roomId}", await reads.call("GET", f"{V1}/state_ids/{room_id}?event_id={event_id}"),
         200),
        ("GET", "/event_auth/{roomId}/{eventId}", await reads.call("GET", f"{V1}/event_auth/{room_id}/{event_id}"),
         200),
        ("GET", "/backfill/{roomId}", await reads.call("GET", f"{V1}/backfill/{room_id}?v={event_id}&limit=5"),
         200),
        ("POST", "/get_missing_events/{roomId}", await reads.call(
            "POST", f"{V1}/get_missing_events/{room_id}",
            {"earliest_events": [shared.bob_join.event_id], "latest_events": [target.event_id]}), 200),
        ("GET", "/query/profile", await reads.call("GET", f"{V1}/query/profile?user_id={q(ALICE)}"), 200),
        ("GET", "/query/profile", await reads.call("GET", f"{V1}/query/profile?user_id={q('@x:test')}"), 404),
        ("GET", "/query/directory", await reads.call("GET", f"{V1}/query/directory?room_alias={q('#spec:test')}"),
         200),
        ("GET", "/query/directory", await reads.call("GET", f"{V1}/query/directory?room_alias={q('#x:test')}"),
         404),
        ("GET", "/publicRooms", await reads.call("GET", f"{V1}/publicRooms"), 200),
        ("POST", "/publicRooms", await reads.call("POST", f"{V1}/publicRooms", {"limit": 1}), 200),
    ]
    for method, spec_path, response, status in answers:
        assert response.status_code == status, (spec_path, response.text)
        assert_matches_spec(method, spec_path, response)
