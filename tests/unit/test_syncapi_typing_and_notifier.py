"""The sync API's in-memory typing cache and the notifier's per-stream positions."""

from __future__ import annotations

import asyncio

import pytest

from syncapi.internal import typing as typing_module
from syncapi.internal.typing import TypingCache
from syncapi.notifier import Notifier
from syncapi.tokens import StreamToken


def test_typing_cache_changes_renewals_and_expiry() -> None:
    cache = TypingCache()
    assert cache.update("!r", "@a:t", True, expires_at_ms=1000, now=0) == 1
    assert cache.update("!r", "@a:t", True, expires_at_ms=2000, now=10) is None  # a renewal
    assert cache.update("!r", "@b:t", True, expires_at_ms=500, now=10) == 2
    assert cache.typers("!r", now=100) == ["@a:t", "@b:t"]
    assert cache.next_expiry() == 500
    assert cache.expire(now=600) == [("!r", 3)]
    assert cache.typers("!r", now=600) == ["@a:t"]
    assert cache.update("!r", "@b:t", False, expires_at_ms=0, now=700) is None  # not typing any more
    assert cache.update("!r", "@a:t", False, expires_at_ms=0, now=700) == 4
    assert cache.typers("!r", now=700) == [] and cache.next_expiry() is None
    assert cache.update("!other", "@a:t", True, expires_at_ms=5, now=10) is None  # already expired
    assert cache.rooms_changed(0, 4) == {"!r"}
    assert cache.rooms_changed(4, 4) == set()
    assert cache.rooms_changed(0, 4, room_ids=["!other"]) == set()


def test_typing_cache_forgets_quiet_rooms_beyond_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(typing_module, "MAX_REMEMBERED_ROOMS", 3)
    cache = TypingCache()
    cache.update("!typing", "@a:t", True, expires_at_ms=10_000, now=0)
    for i in range(3):
        cache.update(f"!quiet{i}", "@a:t", True, expires_at_ms=10_000, now=0)
        cache.update(f"!quiet{i}", "@a:t", False, expires_at_ms=0, now=0)
    assert cache.rooms_changed(0, cache.position) == {"!typing", "!quiet2"}


async def test_notifier_streams_are_independent() -> None:
    notifier = Notifier("t")
    notifier.start_at(10)
    notifier.start_at(5, "receipt")
    since = StreamToken(10, 0, 5, 0, 0)
    assert notifier.has_news("@a:t", since) is False
    # A token older than a stream's start is looked up in the database.
    assert notifier.has_news("@a:t", StreamToken(10, 0, 4, 0, 0)) is None
    waiting = asyncio.create_task(notifier.wait_for_news("@a:t", since, 5))
    other = asyncio.create_task(notifier.wait_for_news("@b:t", since, 0.2))
    await asyncio.sleep(0.01)
    notifier.on_new_data(1, ["@a:t"], "to_device")
    assert await asyncio.wait_for(waiting, 1) is True
    assert await other is False
    assert notifier.current_token() == StreamToken(10, 0, 5, 0, 1)
    assert notifier.has_news("@a:t", since) is True
    assert notifier.has_news("@a:t", StreamToken(10, 0, 5, 0, 1)) is False
    # Room-event positions alone (an int) ignore the other streams.
    assert notifier.has_news("@a:t", 10) is False


def test_notifier_learns_of_other_instances_per_stream() -> None:
    notifier = Notifier("t")
    notifier.start_at(3, "presence")
    notifier.positions_taken(range(4, 5), "presence")
    notifier.note_database_positions({"presence": 4})
    assert notifier.has_news("@a:t", StreamToken(0, 0, 0, 3, 0)) is False  # position 4 was ours
    notifier.note_database_positions({"presence": 6, "unknown-stream": 9})
    assert notifier.stream_position("presence") == 6
    assert notifier.has_news("@a:t", StreamToken(0, 0, 0, 5, 0)) is None
    assert notifier.has_news("@a:t", StreamToken(0, 0, 0, 6, 0)) is False
