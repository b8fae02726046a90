"""Pure pieces of the sync API: filter parsing and matching, tokens, visibility."""

from __future__ import annotations

from typing import Any

import pytest

from common import errors
from syncapi.filters import (
    EventFilter,
    apply_event_fields,
    like_pattern,
    parse_filter,
    type_matches,
)
from syncapi.internal.visibility import MembershipSpan, RoomVisibility
from syncapi.storage.tables.events import StoredEvent
from syncapi.tokens import StreamToken, TopologyToken, parse_pagination_token


def test_type_patterns() -> None:
    assert type_matches("m.room.*", "m.room.message")
    assert not type_matches("m.room.*", "m.call.invite")
    assert type_matches("*", "anything")
    assert type_matches("m.room.message", "m.room.message")
    assert not type_matches("m.room.message", "m.room.messages")
    assert not type_matches("m.?", "m.x")  # only * is special
    assert like_pattern("a_b%c*") == "a\\_b\\%c%"


def test_event_filter_matching() -> None:
    f = EventFilter(types=("m.room.*",), not_types=("m.room.member",), not_senders=("@x:a",))
    assert f.allows("m.room.message", "@y:a")
    assert not f.allows("m.room.member", "@y:a")
    assert not f.allows("m.room.message", "@x:a")
    assert not EventFilter(contains_url=True).allows("m.room.message", "@y:a", contains_url=False)


def test_filter_parsing() -> None:
    parsed = parse_filter({"room": {"rooms": ["!a"], "include_leave": True,
                                    "timeline": {"limit": 3}, "state": {"lazy_load_members": True}}})
    assert parsed.timeline_limit == 3 and parsed.room.include_leave
    assert parsed.room.allows_room("!a") and not parsed.room.allows_room("!b")
    assert parsed.room.state.lazy_load_members
    assert parse_filter({}).timeline_limit == 10
    bad: dict[str, Any]
    for bad in ({"room": []}, {"room": {"timeline": {"limit": -1}}}, {"room": {"rooms": "!a"}},
                {"event_format": "xml"}, {"room": {"state": {"lazy_load_members": "yes"}}}):
        with pytest.raises(errors.BadJSON):
            parse_filter(bad)


def test_event_fields() -> None:
    event = {"type": "t", "content": {"body": "b", "a.b": 1, "other": 2}, "sender": "s"}
    assert apply_event_fields(event, ["type", "content.body", "content.a\\.b", "missing.x"]) == {
        "type": "t", "content": {"body": "b", "a.b": 1}}
    assert apply_event_fields(event, None) == event


def test_tokens_round_trip() -> None:
    assert str(StreamToken(12)) == "s12_0_0_0_0_0_0"
    assert StreamToken.parse("s12_0_0") == StreamToken(12)
    assert StreamToken.parse("s7") == StreamToken(7)
    assert StreamToken.parse("s7_1_2_3_4") == StreamToken(7, 1, 2, 3, 4)
    assert StreamToken.parse("s7_1_2_3_4_5") == StreamToken(7, 1, 2, 3, 4, 5)
    assert StreamToken.parse("s7_1_2_3_4_5_6") == StreamToken(7, 1, 2, 3, 4, 5, 6)
    # A position of a stream a newer version added is ignored.
    assert StreamToken.parse("s7_1_2_3_4_5_6_8") == StreamToken(7, 1, 2, 3, 4, 5, 6)
    assert TopologyToken.parse(str(TopologyToken(5, 9))) == TopologyToken(5, 9)
    assert parse_pagination_token("t3-4") == TopologyToken(3, 4)
    assert parse_pagination_token("s3_0_0") == StreamToken(3)
    assert TopologyToken(2, 100) < TopologyToken(3, 1)
    for bad in ("", "x1", "s", "sx_1", "s-1", "t1", "t-", "tq-1"):
        with pytest.raises(errors.InvalidParam):
            parse_pagination_token(bad)


def _event(position: int, visibility: str, event_type: str = "m.room.message",
           state_key: str | None = None) -> StoredEvent:
    return StoredEvent(position, "!r", f"$e{position}", event_type, "@a:t", state_key, position, "12", "{}",
                       None, visibility, False, False, False, None, None)


def test_visibility_rules() -> None:
    # Invited at 5, joined at 10, left at 20.
    vis = RoomVisibility("@u:t", [MembershipSpan("invite", 5, 10), MembershipSpan("join", 10, 20),
                                  MembershipSpan("leave", 20, None)])
    assert vis.left_at == 20
    assert vis.can_see(_event(12, "joined"))
    assert not vis.can_see(_event(3, "joined"))
    assert vis.can_see(_event(6, "invited")) and not vis.can_see(_event(3, "invited"))
    assert vis.can_see(_event(3, "shared"))
    assert not vis.can_see(_event(25, "shared"))
    assert vis.can_see(_event(25, "world_readable"))
    assert vis.can_see(_event(20, "joined", "m.room.member", "@u:t"))
    stranger = RoomVisibility("@s:t", [])
    assert not stranger.can_see(_event(3, "shared"))
    assert stranger.can_see(_event(3, "world_readable"))


async def test_notifier_wakes_only_the_affected_local_users() -> None:
    import asyncio

    from syncapi.notifier import Notifier

    notifier = Notifier("test")
    notifier.start_at(10)
    assert notifier.has_news("@a:test", 10) is False
    assert notifier.has_news("@a:test", 5) is None  # before the notifier started: ask the database
    waiting_a = asyncio.create_task(notifier.wait_for_news("@a:test", 10, 5))
    waiting_b = asyncio.create_task(notifier.wait_for_news("@b:test", 10, 0.2))
    await asyncio.sleep(0.01)
    notifier.on_new_data(11, ["@a:test", "@remote:elsewhere"])
    assert await asyncio.wait_for(waiting_a, 1) is True
    assert await waiting_b is False
    assert notifier.position == 11
    assert notifier.has_news("@a:test", 10) is True and notifier.has_news("@a:test", 11) is False
    assert "@remote:elsewhere" not in notifier._streams["pdu"].last_position
    assert notifier._waiters == {}


async def test_notifier_tells_its_own_positions_from_other_writers() -> None:
    import asyncio

    from syncapi.notifier import Notifier

    notifier = Notifier("test")
    notifier.start_at(10)
    notifier.positions_taken(range(11, 13))
    notifier.note_database_position(12)  # ours, committed but perhaps not yet reported
    assert notifier.has_news("@a:test", 10) is False
    waiting = asyncio.create_task(notifier.wait_for_news("@a:test", 12, 5))
    await asyncio.sleep(0.01)
    notifier.note_database_position(13)  # 13 was taken elsewhere
    assert await asyncio.wait_for(waiting, 1) is True
    assert notifier.has_news("@a:test", 12) is None
    assert notifier.has_news("@a:test", 13) is False
    assert notifier.position == 13
