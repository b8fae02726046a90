"""A change of one user's push rules or ignored users reaches the push inputs
kept for their rooms as that user's alone (issue 6): the next event of a big
room reads that user's account data again, not the room's members, and
notifies exactly as a fresh read of everything would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from matrixlib.events import Event
from syncapi.internal.push import PushEvaluator
from syncapi.storage.tables import current_state as state_t
from syncapi.storage.tables import notifications as notifications_t
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, on_each_database
from tests.component.syncapi.test_account_data import change

MEMBERS = [f"@member{i:02d}:test" for i in range(40)]
PIE_RULES = {"global": {"content": [
    {"rule_id": "pie", "default": False, "enabled": True, "pattern": "pie",
     "actions": ["notify", {"set_tweak": "highlight"}]}]}}
CAKE_RULES = {"global": {"content": [
    {"rule_id": "cake", "default": False, "enabled": True, "pattern": "cake",
     "actions": ["notify", {"set_tweak": "highlight"}]}]}}

Notified = set[tuple[str, str, bool]]


class Reads:
    """Who the push inputs' reads ask about while in use: the calls reading
    a room's members, and the users whose account data is read."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.member_reads = 0
        self.account_data_users: list[str] = []
        # While set, nothing is counted (a test's own fresh evaluation).
        self.paused = False
        for module, name in ((notifications_t, "select_local_joined_members"),
                             (state_t, "select_member_counts")):
            monkeypatch.setattr(module, name, self._counting(getattr(module, name)))
        for name in ("select_global_account_data_of_types", "select_global_account_data"):
            monkeypatch.setattr(notifications_t, name, self._recording(getattr(notifications_t, name)))

    def _counting(self, real: Any) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.member_reads += not self.paused
            return await real(*args, **kwargs)
        return counted

    def _recording(self, real: Any) -> Any:
        async def recorded(conn: Any, user_ids: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.paused:
                self.account_data_users.extend(user_ids)
            return await real(conn, user_ids, *args, **kwargs)
        return recorded


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
    yield Reads(monkeypatch)


async def big_room(env: Env) -> TestRoom:
    room = TestRoom()
    room.join(BOB)
    room.join(CAROL)
    for member in MEMBERS:
        room.join(member)
    await env.send_room(room)
    await env.send(room.message(BOB, "the inputs are kept from here on"))
    return room


async def stored_notifications(env: Env, event: Event) -> tuple[int, Notified]:
    table = notifications_t.notifications
    async with env.syncapi.database.read() as reader:
        rows = (await reader.conn.execute(
            sa.select(table.c.user_id, table.c.stream_pos, table.c.actions_json, table.c.highlight)
            .where(table.c.event_id == event.event_id))).all()
        if not rows:
            stream_pos = (await reader.events_by_ids([event.event_id]))[event.event_id].stream_pos
        else:
            stream_pos = rows[0].stream_pos
    return stream_pos, {(r.user_id, r.actions_json, bool(r.highlight)) for r in rows}


async def freshly_evaluated(env: Env, event: Event, stream_pos: int) -> Notified:
    """What an evaluator keeping nothing answers for the event now."""
    fresh = PushEvaluator(env.syncapi.database, "test")
    async with env.syncapi.database.read() as reader:
        rows = await fresh.evaluate(reader, event.room_id, [(event, stream_pos)], state_changed=True)
    return {(r.user_id, r.actions_json, r.highlight) for r in rows}


async def send_and_check(env: Env, reads: Reads, event: Event) -> Notified:
    """Sends the event; what it notified, checked equal to a fresh read's
    (which ``Reads`` does not count)."""
    await env.send(event)
    stream_pos, notified = await stored_notifications(env, event)
    reads.paused = True
    try:
        assert notified == await freshly_evaluated(env, event, stream_pos)
    finally:
        reads.paused = False
    return notified


def highlighted(notified: Notified) -> set[str]:
    return {user_id for user_id, _, highlight in notified if highlight}


@on_each_database
async def test_a_rules_change_rereads_only_that_user(env: Env, reads: Reads) -> None:
    room = await big_room(env)
    await change(env, ALICE, "m.push_rules", PIE_RULES)
    reads.member_reads, reads.account_data_users[:] = 0, []
    notified = await send_and_check(env, reads, room.message(BOB, "apple pie"))
    # Alice's change applies to her at once; nobody else's account data,
    # and no member of the room, was read for it.
    assert reads.member_reads == 0
    assert reads.account_data_users == [ALICE]
    assert highlighted(notified) == {ALICE}
    assert {user_id for user_id, _, _ in notified} == {ALICE, CAROL, *MEMBERS}
    # The next one reads nothing at all.
    reads.account_data_users[:] = []
    notified = await send_and_check(env, reads, room.message(CAROL, "more pie"))
    assert (reads.member_reads, reads.account_data_users) == (0, [])
    assert highlighted(notified) == {ALICE}
    # Back to the defaults: no longer highlighted.
    await change(env, ALICE, "m.push_rules", {})
    notified = await send_and_check(env, reads, room.message(BOB, "last pie"))
    assert reads.member_reads == 0 and reads.account_data_users == [ALICE]
    assert highlighted(notified) == set() and ALICE in {u for u, _, _ in notified}


@on_each_database
async def test_an_ignore_applies_to_its_user_only(env: Env, reads: Reads) -> None:
    room = await big_room(env)
    await change(env, CAROL, "m.ignored_user_list", {"ignored_users": {BOB: {}}})
    reads.member_reads, reads.account_data_users[:] = 0, []
    notified = await send_and_check(env, reads, room.message(BOB, "hello"))
    assert reads.member_reads == 0
    assert reads.account_data_users == [CAROL]
    assert {user_id for user_id, _, _ in notified} == {ALICE, *MEMBERS}
    # Carol still hears from the others.
    notified = await send_and_check(env, reads, room.message(ALICE, "hi"))
    assert {user_id for user_id, _, _ in notified} == {BOB, CAROL, *MEMBERS}
    # A change of a user in none of the kept rooms reads nothing.
    await change(env, "@stranger:test", "m.push_rules", CAKE_RULES)
    reads.account_data_users[:] = []
    await send_and_check(env, reads, room.message(BOB, "cake"))
    assert (reads.member_reads, reads.account_data_users) == (0, [])


async def test_a_change_told_while_its_user_is_read_is_read_again(
        env: Env, reads: Reads, monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumer tells the evaluator after the write commits: a read of
    the user's rules under way then may hold the older ones, and must not
    be kept past it."""
    room = await big_room(env)
    evaluator = env.syncapi.push_evaluator
    await change(env, ALICE, "m.push_rules", PIE_RULES)
    # The cake rules are stored, and told while Alice's rules are being read,
    # which answers the pie ones (read just before the write).
    await env.syncapi.database.write_account_data(ALICE, "", "m.push_rules", json.dumps(CAKE_RULES))
    real = notifications_t.select_global_account_data_of_types

    async def read_before_the_write(conn: Any, user_ids: Any, types: Any) -> Any:
        found = await real(conn, user_ids, types)
        if ALICE in user_ids:
            found[(ALICE, "m.push_rules")] = json.dumps(PIE_RULES)
            evaluator.forget_user(ALICE)
        return found

    monkeypatch.setattr(notifications_t, "select_global_account_data_of_types", read_before_the_write)
    pie = room.message(BOB, "pie")
    await env.send(pie)
    # Evaluated with the rules read: the pie ones.
    assert highlighted((await stored_notifications(env, pie))[1]) == {ALICE}
    monkeypatch.setattr(notifications_t, "select_global_account_data_of_types", real)
    assert highlighted(await send_and_check(env, reads, room.message(BOB, "cake"))) == {ALICE}
    assert highlighted(await send_and_check(env, reads, room.message(BOB, "pie again"))) == set()


async def test_a_room_kept_past_the_remembered_changes_is_read_whole(
        env: Env, reads: Reads, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env.syncapi.push_evaluator, "_user_changes",
                        type(env.syncapi.push_evaluator._user_changes)(maxlen=2))
    room = await big_room(env)
    await change(env, ALICE, "m.push_rules", PIE_RULES)
    for i in range(3):
        await change(env, f"@other{i}:test", "m.push_rules", CAKE_RULES)
    reads.member_reads = 0
    assert highlighted(await send_and_check(env, reads, room.message(BOB, "pie"))) == {ALICE}
    assert reads.member_reads > 0
