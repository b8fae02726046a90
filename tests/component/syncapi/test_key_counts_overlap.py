"""The device's one-time key counts (a call to the user API, in the split
deployment over gRPC) are asked for as a /sync answer starts being built,
so the call overlaps the answer's reads, and for a woken long poll as soon as
its news starts being written, so it overlaps the write too; a long poll that
ends idle does not ask for them, and counts asked for news that was not the
answer's are asked for again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from myelin.userapi.v1 import userapi_pb2

from syncapi.internal import device_lists
from syncapi.internal.sync import _Builder
from syncapi.routing import sync as sync_routes
from syncapi.storage.database import Reader, SyncDatabase
from tests.builders import TestRoom
from tests.component.syncapi import conftest
from tests.component.syncapi.conftest import ALICE, BOB, Env


class KeyCountingUserAPI(conftest.FakeUserAPI):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []
        self.delay = 0.0
        self.fail = False

    async def query_one_time_key_counts(self, req: userapi_pb2.QueryOneTimeKeyCountsRequest
                                        ) -> userapi_pb2.OneTimeKeyCounts:
        self.asked.append(req.device_id)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("user API unavailable")
        return userapi_pb2.OneTimeKeyCounts(one_time_key_counts={"signed_curve25519": 7},
                                            unused_fallback_key_types=["signed_curve25519"])


@contextlib.asynccontextmanager
async def keyed_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Env, KeyCountingUserAPI]]:
    monkeypatch.setattr(conftest, "FakeUserAPI", KeyCountingUserAPI)
    async with conftest.running_env(tmp_path) as env:
        assert isinstance(env.users, KeyCountingUserAPI)
        yield env, env.users


async def _bob_in_a_room(env: Env) -> tuple[TestRoom, str, str]:
    """A room Bob is joined to, his token and a sync token after it."""
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    token = env.token(BOB)
    return room, token, await env.next_batch(token)


def _recording_counts_asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that gets "counts asked" whenever /sync asks for key counts;
    a test adds what they are to come before or after."""
    order: list[str] = []
    start = device_lists.start_key_counts

    def starting(*args: Any) -> Any:
        order.append("counts asked")
        return start(*args)

    monkeypatch.setattr(sync_routes, "start_key_counts", starting)
    return order


async def test_key_counts_are_asked_for_before_the_answer_reads(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    async with keyed_env(tmp_path, monkeypatch) as (env, users):
        room, token, since = await _bob_in_a_room(env)

        order = _recording_counts_asked(monkeypatch)
        news_read = Reader.joined_rooms_news_and_counts

        async def recording(self: Reader, *args: object, **kwargs: object) -> object:
            order.append("news read")
            return await news_read(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Reader, "joined_rooms_news_and_counts", recording)
        users.asked.clear()
        users.delay = 0.05
        poll = asyncio.create_task(env.sync(token, since=since, timeout=10000))
        await asyncio.sleep(0.1)
        assert users.asked == []  # not while the long poll waits
        await env.send(room.message(ALICE, "news"))
        body = await asyncio.wait_for(poll, 5)
        assert body["rooms"]["join"][room.room_id]["timeline"]["events"]
        assert body["device_one_time_keys_count"] == {"signed_curve25519": 7}
        assert body["device_unused_fallback_key_types"] == ["signed_curve25519"]
        assert users.asked == ["DEV"]
        assert order == ["counts asked", "news read"]


async def test_an_idle_long_poll_does_not_ask_for_counts_and_failures_fail_as_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with keyed_env(tmp_path, monkeypatch) as (env, users):
        room, token, since = await _bob_in_a_room(env)
        users.asked.clear()
        body = await env.sync(token, since=since, timeout=50)
        assert body["rooms"]["join"] == {} and "device_one_time_keys_count" not in body
        assert users.asked == []  # idle: never asked

        # A failing user API: an answer that needs the counts fails as before.
        users.fail = True
        await env.send(room.message(ALICE, "news"))
        response = await env.get("/_matrix/client/v3/sync", token, since=since)
        assert response.status_code == 500
        assert users.asked == ["DEV"]

        # The answer fails after the counts were asked for: the request fails
        # as it did (the counts are dropped with it).
        users.fail = False

        async def broken(self: object) -> dict[str, object]:
            await asyncio.sleep(0.05)
            raise RuntimeError("the answer failed")

        monkeypatch.setattr(_Builder, "build", broken)
        response = await env.get("/_matrix/client/v3/sync", token, since=since)
        assert response.status_code == 500
        assert users.asked == ["DEV", "DEV"]


async def test_a_woken_long_poll_asks_for_counts_as_its_news_is_written(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    async with keyed_env(tmp_path, monkeypatch) as (env, users):
        room, token, since = await _bob_in_a_room(env)

        order = _recording_counts_asked(monkeypatch)
        write = SyncDatabase.write_room_events_with_push

        async def writing(self: SyncDatabase, *args: Any, **kwargs: Any) -> Any:
            order.append("news written")
            return await write(self, *args, **kwargs)

        monkeypatch.setattr(SyncDatabase, "write_room_events_with_push", writing)
        users.asked.clear()
        poll = asyncio.create_task(env.sync(token, since=since, timeout=10000))
        await asyncio.sleep(0.1)
        assert users.asked == []
        await env.send(room.message(ALICE, "news"))
        body = await asyncio.wait_for(poll, 5)
        assert body["rooms"]["join"][room.room_id]["timeline"]["events"]
        assert body["device_one_time_keys_count"] == {"signed_curve25519": 7}
        assert users.asked == ["DEV"]  # once: the answer's build used what was asked
        assert order[:2] == ["counts asked", "news written"]


async def test_counts_asked_for_news_that_was_not_the_answers_are_asked_for_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_routes, "KEY_COUNTS_FRESH_S", 0.05)
    async with keyed_env(tmp_path, monkeypatch) as (env, users):
        room, token, since = await _bob_in_a_room(env)
        users.asked.clear()
        poll = asyncio.create_task(env.sync(token, since=since, timeout=10000))
        await asyncio.sleep(0.1)
        # An entry the sync API has already: written again as nothing, so
        # nobody is woken, but its news was announced.
        await env.append(env.new_room_event(room.events[-1]), room.room_id)
        for _ in range(200):
            if users.asked:
                break
            await asyncio.sleep(0.01)
        assert users.asked == ["DEV"]
        await asyncio.sleep(0.2)
        assert not poll.done()
        # Real news, later: the counts are those of now, asked for again.
        await env.send(room.message(ALICE, "news"))
        body = await asyncio.wait_for(poll, 5)
        assert body["rooms"]["join"][room.room_id]["timeline"]["events"]
        assert body["device_one_time_keys_count"] == {"signed_curve25519": 7}
        assert users.asked == ["DEV", "DEV"]
