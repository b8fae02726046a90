"""The sync API with real storage, a real embedded log and a real Sanic app,
fed with OutputEvents built from real signed events (tests/builders.py), and
fake neighbours: a user API mapping tokens to devices, a room server that
answers the one query the consumer asks (current state, after a gap)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from myelin.roomserver.v1 import output_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2

from common import errors
from common.config import Config
from common.http import ServingApp, make_app, serve_app
from common.logs.embedded import EmbeddedLog
from common.storage import database_url_for, open_database
from common.topics import ROOMSERVER_OUTPUT
from matrixlib.events import HISTORY_VISIBILITY, MEMBER, Event, StateKey
from roomserver.api import SyncRoomserverAPI
from syncapi.component import SyncAPI, build
from tests.builders import TEST_SERVER_NAME, TestRoom, event_proto

ALICE = "@alice:test"
BOB = "@bob:test"
CAROL = "@carol:test"


class FakeUserAPI:
    """Access tokens "<user>/<device>" style: token -> (user, device)."""

    def __init__(self) -> None:
        self.tokens: dict[str, tuple[str, str]] = {}

    def add(self, token: str, user_id: str, device_id: str) -> None:
        self.tokens[token] = (user_id, device_id)

    async def query_access_token(self, req: userapi_pb2.QueryAccessTokenRequest) -> userapi_pb2.Device:
        if req.access_token not in self.tokens:
            raise errors.UnknownToken("Unknown access token")
        user_id, device_id = self.tokens[req.access_token]
        return userapi_pb2.Device(user_id=user_id, device_id=device_id)


class FakeSyncRoomserver:
    """Answers query_latest_events_and_state from the TestRooms it is given."""

    def __init__(self) -> None:
        self.rooms: dict[str, TestRoom] = {}
        self.state_queries: list[str] = []
        # Events the room server has accepted (query_events_by_id answers them).
        self.accepted: dict[str, Event] = {}
        self.event_queries: list[str] = []

    async def query_events_by_id(self, req: rs_pb.QueryEventsByIDRequest) -> rs_pb.QueryEventsByIDResponse:
        self.event_queries.extend(req.event_ids)
        return rs_pb.QueryEventsByIDResponse(
            events=[event_proto(self.accepted[e]) for e in req.event_ids if e in self.accepted])

    async def query_latest_events_and_state(
            self, req: rs_pb.QueryLatestEventsAndStateRequest) -> rs_pb.QueryLatestEventsAndStateResponse:
        self.state_queries.append(req.room_id)
        room = self.rooms.get(req.room_id)
        if room is None:
            return rs_pb.QueryLatestEventsAndStateResponse(room_exists=False)
        return rs_pb.QueryLatestEventsAndStateResponse(
            room_exists=True, room_version=room.version.identifier, latest_event_ids=room.latest,
            state_events=[event_proto(e) for e in room.state.values()])

    async def query_membership_for_user(
            self, req: rs_pb.QueryMembershipForUserRequest) -> rs_pb.QueryMembershipForUserResponse:
        room = self.rooms.get(req.room_id)
        return membership_response(None if room is None else room.state, req.user_id)


def membership_response(state: Mapping[StateKey, Event] | None,
                        user_id: str) -> rs_pb.QueryMembershipForUserResponse:
    """The room server's answer for ``user_id`` in a room with this current state
    (None: a room it does not know)."""
    if state is None:
        return rs_pb.QueryMembershipForUserResponse(room_exists=False)
    event = state.get((MEMBER, user_id))
    if event is None:
        return rs_pb.QueryMembershipForUserResponse(room_exists=True)
    membership = str(event.content.get("membership", ""))
    return rs_pb.QueryMembershipForUserResponse(
        room_exists=True, has_been_in_room=True, membership=membership, event_id=event.event_id,
        is_in_room=membership == "join")


@dataclass
class RoomFeed:
    """What the room server would have written for a room: the state as the
    sync API should see it, and the last event written."""

    state: dict[StateKey, Event] = field(default_factory=dict)
    last_sent: str = ""
    position: int = 0


class Env:
    def __init__(self, syncapi: SyncAPI, log: EmbeddedLog, serving: ServingApp, client: httpx.AsyncClient,
                 users: FakeUserAPI, roomserver: FakeSyncRoomserver) -> None:
        self.syncapi = syncapi
        self.log = log
        self.serving = serving
        self.client = client
        self.users = users
        self.roomserver = roomserver
        self.feeds: dict[str, RoomFeed] = {}

    def token(self, user_id: str, device_id: str = "DEV") -> str:
        token = f"tok-{user_id}-{device_id}"
        self.users.add(token, user_id, device_id)
        return token

    # -- writing the output log ------------------------------------------------------------

    def new_room_event(self, event: Event, *, txn: tuple[str, str, str] | None = None,
                       historical: bool = False) -> output_log_pb2.OutputEvent:
        """The NewRoomEvent the room server writes for a linear room's next event."""
        feed = self.feeds.setdefault(event.room_id, RoomFeed())
        visibility_event = feed.state.get((HISTORY_VISIBILITY, ""))
        visibility = (visibility_event.content.get("history_visibility", "shared")
                      if visibility_event else "shared")
        adds: list[str] = []
        removes: list[str] = []
        if event.state_key is not None and not historical:
            previous = feed.state.get(event.state_tuple)
            if previous is not None:
                removes.append(previous.event_id)
            adds.append(event.event_id)
            feed.state[event.state_tuple] = event
        feed.position += 1
        msg = output_log_pb2.NewRoomEvent(
            event=event_proto(event), adds_state_event_ids=adds, removes_state_event_ids=removes,
            latest_event_ids=[event.event_id], last_sent_event_id=feed.last_sent,
            history_visibility=visibility, room_stream_position=feed.position, historical=historical)
        if txn is not None:
            msg.transaction_id.user_id, msg.transaction_id.device_id, msg.transaction_id.transaction_id = txn
        feed.last_sent = event.event_id
        return output_log_pb2.OutputEvent(new_room_event=msg)

    async def append(self, output: output_log_pb2.OutputEvent, room_id: str) -> None:
        await self.log.append(ROOMSERVER_OUTPUT.name, room_id.encode(), output.SerializeToString())

    async def send(self, *events: Event, txn: tuple[str, str, str] | None = None,
                   historical: bool = False, wait: bool = True) -> None:
        """Writes the events' output entries and waits until the sync API has them."""
        for event in events:
            await self.append(self.new_room_event(event, txn=txn, historical=historical), event.room_id)
        if wait:
            await self.wait_for_events([e.event_id for e in events])

    async def wait_for_events(self, event_ids: list[str]) -> None:
        """Until the events are stored and the notifier has been told (a
        /sync right after must see them)."""
        async def known() -> bool:
            for event_id in event_ids:
                if not await self.syncapi.database.is_known_event(event_id):
                    return False
            return True
        await wait_until(known)
        async with self.syncapi.database.read() as reader:
            stored = await reader.events_by_ids(event_ids)
        highest = max(e.stream_pos for e in stored.values())
        await wait_until(lambda: self.syncapi.notifier.position >= highest)

    async def send_room(self, room: TestRoom) -> None:
        await self.send(*room.events)

    # -- HTTP ---------------------------------------------------------------------------------

    async def get(self, path: str, token: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})

    async def sync(self, token: str, **params: Any) -> dict[str, Any]:
        response = await self.get("/_matrix/client/v3/sync", token, **params)
        assert response.status_code == 200, response.text
        return cast(dict[str, Any], response.json())

    async def next_batch(self, token: str, **params: Any) -> str:
        """The token of a /sync now: what a later incremental /sync starts from."""
        return str((await self.sync(token, **params))["next_batch"])


async def shared_room(env: Env, *members: str) -> TestRoom:
    """A new room of Alice's that ``members`` joined, sent to the sync API."""
    room = TestRoom()
    for member in members:
        room.join(member)
    await env.send_room(room)
    return room


async def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def make_config(tmp_path: Path, postgres_url: str = "") -> Config:
    return Config(server_name=TEST_SERVER_NAME, data_dir=tmp_path, signing_key_path=tmp_path / "signing.key",
                  postgres_url=postgres_url)


@contextlib.asynccontextmanager
async def running_env(tmp_path: Path, database_url: str | None = None, *, log: EmbeddedLog | None = None,
                      roomserver_api: SyncRoomserverAPI | None = None) -> AsyncIterator[Env]:
    """The sync API serving on a free port; ``log`` and ``roomserver_api``
    replace the embedded log and the fake room server (the caller then owns them)."""
    config = make_config(tmp_path)
    own_log = log is None
    if log is None:
        log = EmbeddedLog(tmp_path / "log", partitions=4)
        await log.start()
    url = database_url or database_url_for("syncapi", postgres_url=None, data_dir=tmp_path)
    database = await open_database(url, "syncapi")
    users = FakeUserAPI()
    roomserver = FakeSyncRoomserver()
    syncapi = build(config, database, log, users, roomserver_api or cast(SyncRoomserverAPI, roomserver))
    syncapi.position_poll_interval = 0.1
    app = make_app(f"syncapi-test-{uuid.uuid4().hex}", [syncapi.blueprint])
    serving = await serve_app(app, "127.0.0.1:0")
    task = asyncio.create_task(syncapi.run())
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{serving.port}", timeout=30)
    try:
        await asyncio.wait_for(syncapi.ready.wait(), 10)
        yield Env(syncapi, log, serving, client, users, roomserver)
    finally:
        await client.aclose()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await serving.stop()
        await syncapi.close()
        if own_log:
            await log.close()


#: A test marked with it runs once on SQLite and once on PostgreSQL (tests/conftest.py's
#: ``database_url``): its ``env`` is on that database.
on_each_database = pytest.mark.usefixtures("database_url")


@pytest.fixture
async def env(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    """The sync API on a SQLite file of its own, or, for a test ``on_each_database``,
    on each database in turn."""
    database_url: str | None = None
    if "database_url" in request.fixturenames:
        database_url = request.getfixturevalue("database_url")
    async with running_env(tmp_path, database_url) as running:
        yield running
