"""/messages going backwards past the start of local history asks the
federation API to backfill, then serves the page with what arrived (the
real room server between them; the federation API is a fake that inputs
the older events as the real one does, as INPUT_KIND_OLD)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest
from myelin.federationapi.v1 import federationapi_pb2 as fed_pb
from myelin.roomserver.v1 import input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common.config import Config
from common.logs.embedded import EmbeddedLog
from federationapi.api import FederationInternalAPI
from matrixlib.events import Event
from roomserver.api import RoomserverAPI
from roomserver.component import open_roomserver
from syncapi.internal import rooms
from tests.builders import TEST_SERVER_NAME, TEST_SIGNING_KEY, TestRoom, input_event
from tests.component.syncapi.conftest import ALICE, Env, running_env

BOB = "@bob:remote.test"


@dataclass
class FakeBackfill:
    """Inputs the room's history the way federationapi's perform_backfill does."""

    roomserver: RoomserverAPI
    history: list[Event] = field(default_factory=list)
    # Events the room server has already (the join).
    later: list[Event] = field(default_factory=list)
    calls: list[fed_pb.PerformBackfillRequest] = field(default_factory=list)

    async def perform_backfill(self, req: fed_pb.PerformBackfillRequest) -> fed_pb.PerformBackfillResponse:
        """Up to ``limit`` events from ``from_event_ids`` back (as /backfill
        answers), oldest first."""
        self.calls.append(req)
        by_id = {e.event_id: e for e in [*self.history, *self.later]}
        found: dict[str, Event] = {}
        frontier = list(req.from_event_ids)
        while frontier and len(found) < req.limit:
            event_id = frontier.pop(0)
            if event_id in by_id and event_id not in found:
                found[event_id] = by_id[event_id]
                frontier.extend(by_id[event_id].prev_event_ids)
        events = sorted((e for e in found.values() if e in self.history), key=lambda e: e.depth)
        if not events:
            return fed_pb.PerformBackfillResponse(added=0)
        answer = await self.roomserver.input_room_events(rs_pb.InputRoomEventsRequest(
            events=[input_event(e, input_log_pb2.INPUT_KIND_OLD) for e in events], wait=True))
        return fed_pb.PerformBackfillResponse(
            added=sum(r.outcome == rs_pb.INPUT_OUTCOME_ACCEPTED for r in answer.results))


@dataclass
class Joined:
    env: Env
    room: TestRoom
    messages: list[Event]
    alice_join: Event
    federation: FakeBackfill


@pytest.fixture
async def joined(tmp_path: Path) -> AsyncIterator[Joined]:
    """alice joined a remote room with history she does not have yet: the
    state before her join is known as outliers, as a join leaves it."""
    log = EmbeddedLog(tmp_path / "log", partitions=4)
    await log.start()
    rs_dir = tmp_path / "roomserver"
    rs_dir.mkdir()
    roomserver = await open_roomserver(Config(server_name=TEST_SERVER_NAME, data_dir=rs_dir,
                                              signing_key_path=rs_dir / "key", input_timeout_seconds=20.0),
                                       log, TEST_SIGNING_KEY)
    task = asyncio.create_task(roomserver.run())
    try:
        await asyncio.wait_for(roomserver.ready.wait(), 10)
        room = TestRoom("12", creator=BOB, server_name="remote.test")
        messages = [room.message(BOB, f"old {i}") for i in range(8)]
        history = list(room.events)
        state_before = list(room.state.values())
        alice_join = room.join(ALICE)
        outliers = await roomserver.api.input_room_events(room.input_request(
            sorted(state_before, key=lambda e: e.depth), kind=input_log_pb2.INPUT_KIND_OUTLIER))
        assert {r.outcome for r in outliers.results} == {rs_pb.INPUT_OUTCOME_ACCEPTED}
        join = await roomserver.api.input_room_events(rs_pb.InputRoomEventsRequest(events=[input_event(
            alice_join, state_event_ids=[e.event_id for e in state_before])], wait=True))
        assert join.results[0].outcome == rs_pb.INPUT_OUTCOME_ACCEPTED, join
        sync_dir = tmp_path / "syncapi"
        sync_dir.mkdir()
        async with running_env(sync_dir, log=log, roomserver_api=roomserver.api) as env:
            await env.wait_for_events([alice_join.event_id])
            yield Joined(env, room, messages, alice_join, FakeBackfill(roomserver.api, history, [alice_join]))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await roomserver.close()
        await log.close()


async def page_back(joined: Joined, limit: int = 50) -> list[str]:
    """Every event paging backwards from now, newest first."""
    events: list[str] = []
    params: dict[str, str | int] = {"dir": "b", "limit": limit}
    for _ in range(50):
        r = await joined.env.get(f"/_matrix/client/v3/rooms/{joined.room.room_id}/messages",
                                 joined.env.token(ALICE), **params)
        assert r.status_code == 200, r.text
        events += [e["event_id"] for e in r.json()["chunk"]]
        if "end" not in r.json():
            return events
        params["from"] = r.json()["end"]
    raise AssertionError("pagination did not end")


async def test_messages_backfills_at_the_start_of_local_history(joined: Joined) -> None:
    # Without a federation API: only what is here.
    assert await page_back(joined) == [joined.alice_join.event_id]
    joined.env.syncapi.room_reads.federation = cast(FederationInternalAPI, joined.federation)
    chunk = await page_back(joined)
    assert len(joined.federation.calls) == 1
    assert list(joined.federation.calls[0].from_event_ids) == [joined.alice_join.event_id]
    # The whole history, newest first, back to the create event.
    assert chunk == [joined.alice_join.event_id] + [e.event_id for e in reversed(joined.federation.history)]
    # Reached the create event: no more backfill.
    assert await page_back(joined) == chunk
    assert len(joined.federation.calls) == 1


async def test_paging_in_small_pages_backfills_page_by_page(joined: Joined, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rooms, "MIN_BACKFILL_LIMIT", 3)
    joined.env.syncapi.room_reads.federation = cast(FederationInternalAPI, joined.federation)
    chunk = await page_back(joined, limit=3)
    assert chunk == [joined.alice_join.event_id] + [e.event_id for e in reversed(joined.federation.history)]
    # Several backfills, each from the earliest event known at the time.
    assert len(joined.federation.calls) >= 2
    assert [list(c.from_event_ids) for c in joined.federation.calls][:1] == [[joined.alice_join.event_id]]


async def test_fruitless_backfill_is_not_repeated_at_once(joined: Joined) -> None:
    joined.federation.history = []
    joined.env.syncapi.room_reads.federation = cast(FederationInternalAPI, joined.federation)
    assert await page_back(joined) == [joined.alice_join.event_id]
    assert await page_back(joined) == [joined.alice_join.event_id]
    assert len(joined.federation.calls) == 1
