"""What an incremental /sync woken by one new message costs the database:
only the streams that moved since the token are read, the room part reads
the rooms with news in a handful of statements, and what is skipped because
the notifier knows nothing changed is still read when it did (or when it
cannot know: another instance wrote it). And what writing a run of
messages costs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import event

from common.storage import open_database
from syncapi.storage.database import NewEvent, RoomEventWrite, SyncDatabase
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, on_each_database, shared_room
from tests.component.syncapi.test_account_data import change

# The long-poll filter many clients use (lazy-loaded members).
LAZY_FILTER = json.dumps({"room": {"timeline": {"limit": 100}, "state": {"lazy_load_members": True}}})


class StatementLog:
    """The statements run on the sync API's database while in use."""

    def __init__(self, env: Env) -> None:
        self.engine = env.syncapi.database.database.engine.sync_engine
        self.statements: list[str] = []

    def _count(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The component's once-a-period read of the positions is not the request's.
        if "syncapi_stream_position" not in statement and not statement.startswith(
                ("BEGIN", "SAVEPOINT", "RELEASE")):
            self.statements.append(statement)

    def __enter__(self) -> StatementLog:
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)


def _timeline(body: dict[str, Any], room_id: str) -> list[str]:
    return [e["event_id"] for e in body["rooms"]["join"][room_id]["timeline"]["events"]]


async def test_one_new_message_costs_a_few_statements(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    room.message(ALICE, "before")
    await env.send_room(room)
    token = env.token(BOB)
    since_plain = await env.next_batch(token)
    # Alice's membership is sent to the device with this one, not again.
    since_lazy = (await env.sync(token, filter=LAZY_FILTER))["next_batch"]
    message = room.message(ALICE, "news")
    await env.send(message)

    with StatementLog(env) as plain:
        body = await env.sync(token, since=since_plain)
    joined = body["rooms"]["join"][room.room_id]
    assert _timeline(body, room.room_id) == [message.event_id]
    assert joined["timeline"]["limited"] is False
    assert joined["unread_notifications"] == {"notification_count": 2, "highlight_count": 0}
    # The rooms with news and their events, their unread counts: nothing else moved.
    assert len(plain.statements) == 2, plain.statements

    with StatementLog(env) as lazy:
        body = await env.sync(token, since=since_lazy, filter=LAZY_FILTER)
    assert _timeline(body, room.room_id) == [message.event_id]
    # And the sender's membership for lazy-loading.
    assert len(lazy.statements) == 3, lazy.statements


@on_each_database
async def test_news_in_several_rooms_is_read_in_one_statement(env: Env) -> None:
    """The recent events of every room with news come from one statement,
    each room with its own limit."""
    rooms = [TestRoom() for _ in range(3)]
    for room in rooms:
        room.join(BOB)
        await env.send_room(room)
    token = env.token(BOB)
    since = await env.next_batch(token)
    busy = [rooms[0].message(ALICE, f"busy {i}") for i in range(3)]
    quiet = rooms[1].message(ALICE, "quiet")
    await env.send(*busy)
    await env.send(quiet)

    # Without a type or sender filter the rooms and their events come from
    # one statement; with one, from two (the rooms, then all their events).
    for timeline_filter, statements in (({"limit": 2}, 1), ({"limit": 2, "types": ["m.room.*"]}, 2)):
        with StatementLog(env) as log:
            body = await env.sync(token, since=since, filter=json.dumps({"room": {"timeline": timeline_filter}}))
        assert set(body["rooms"]["join"]) == {rooms[0].room_id, rooms[1].room_id}
        assert _timeline(body, rooms[0].room_id) == [busy[1].event_id, busy[2].event_id]
        assert body["rooms"]["join"][rooms[0].room_id]["timeline"]["limited"] is True
        assert _timeline(body, rooms[1].room_id) == [quiet.event_id]
        assert body["rooms"]["join"][rooms[1].room_id]["timeline"]["limited"] is False
        assert sum("FROM syncapi_events" in s and "stream_pos >" in s for s in log.statements) == statements, (
            log.statements)
    # A room joined since the token comes whole, with the membership history read.
    newer = TestRoom()
    newer.join(BOB)
    newer.message(ALICE, "welcome")
    await env.send_room(newer)
    body = await env.sync(token, since=body["next_batch"])
    assert _timeline(body, newer.room_id) == [e.event_id for e in newer.events]


async def test_membership_news_skipped_only_when_there_is_none(env: Env) -> None:
    """Invites, joins and leaves still arrive: the notifier was told of them
    before their commit."""
    room = await shared_room(env, BOB)
    other = await shared_room(env)
    token = env.token(BOB)
    since = await env.next_batch(token)

    await env.send(other.invite(ALICE, BOB))
    body = await env.sync(token, since=since)
    assert list(body["rooms"]["invite"]) == [other.room_id]
    since = body["next_batch"]

    await env.send(other.join(BOB))
    body = await env.sync(token, since=since)
    # As if initial: the room from its start.
    assert _timeline(body, other.room_id) == [e.event_id for e in other.events]
    since = body["next_batch"]

    await env.send(room.leave(BOB))
    body = await env.sync(token, since=since)
    assert list(body["rooms"]["leave"]) == [room.room_id]
    since = body["next_batch"]

    message = other.message(ALICE, "after all that")
    await env.send(message)
    with StatementLog(env) as log:
        body = await env.sync(token, since=since)
    assert list(body["rooms"]["join"]) == [other.room_id] and not body["rooms"]["leave"]
    assert not any("syncapi_invites" in s for s in log.statements)


async def test_an_invite_written_by_another_instance_is_found(env: Env) -> None:
    """Another sync API instance sharing the database wrote the invite: this
    one cannot know the membership news, so it looks in the database."""
    room = await shared_room(env)
    token = env.token(BOB)
    since = await env.next_batch(token)
    poll = asyncio.create_task(env.sync(token, since=since, timeout=10000))
    await asyncio.sleep(0.2)
    invite = room.invite(ALICE, BOB)
    url = env.syncapi.database.database.engine.url.render_as_string(hide_password=False)
    other = SyncDatabase(await open_database(url, "syncapi"))
    try:
        await other.write_room_event(
            NewEvent(event=invite, historical=False, history_visibility="shared"),
            adds_state_event_ids=[invite.event_id], removes_state_event_ids=[], adds_state_events=[],
            room_stream_position=99, local_server="test")
    finally:
        await other.close()
    body = await asyncio.wait_for(poll, 5)
    assert list(body["rooms"]["invite"]) == [room.room_id]


async def test_ignored_users_are_read_again_when_the_account_data_moves(env: Env) -> None:
    room = await shared_room(env, BOB, CAROL)
    token = env.token(BOB)
    since = await env.next_batch(token)
    await change(env, BOB, "m.ignored_user_list", {"ignored_users": {CAROL: {}}})
    since = (await env.sync(token, since=since))["next_batch"]

    # Kept: the account data did not move, and no statement reads it.
    hidden, shown = room.message(CAROL, "hidden"), room.message(ALICE, "shown")
    await env.send(hidden, shown)
    with StatementLog(env) as log:
        body = await env.sync(token, since=since)
    assert _timeline(body, room.room_id) == [shown.event_id]
    assert not any("syncapi_account_data" in s for s in log.statements)
    since = body["next_batch"]

    await change(env, BOB, "m.ignored_user_list", {"ignored_users": {}})
    heard = room.message(CAROL, "heard")
    await env.send(heard)
    body = await env.sync(token, since=since)
    assert _timeline(body, room.room_id) == [heard.event_id]
    again = room.message(CAROL, "heard again")
    await env.send(again)
    body = await env.sync(token, since=body["next_batch"])
    assert _timeline(body, room.room_id) == [again.event_id]


def _writes(events: list[Any]) -> list[RoomEventWrite]:
    return [RoomEventWrite(NewEvent(event=e, historical=False, history_visibility="shared"),
                           adds_state_event_ids=[], removes_state_event_ids=[], adds_state_events=[],
                           room_stream_position=i) for i, e in enumerate(events)]


@on_each_database
async def test_a_run_of_messages_is_written_in_the_statements_of_one(env: Env) -> None:
    room = await shared_room(env, BOB)
    database = env.syncapi.database

    one = [room.message(ALICE, "single")]
    with StatementLog(env) as single:
        await database.write_room_events(_writes(one), local_server="test")
    parent = room.message(ALICE, "five at once")
    run = [parent, room.message(BOB, "two"),
           room.build("m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": parent.event_id,
                                                      "key": "+1"}}, sender=BOB),
           room.message(ALICE, "four"), room.message(BOB, "searchable words")]
    with StatementLog(env) as five:
        results = await database.write_room_events(_writes(run), local_server="test")
    # One more for the reaction's relation; none per event otherwise.
    assert len(five.statements) == len(single.statements) + 1, five.statements

    positions = [applied.position for applied in results if applied is not None]
    assert len(positions) == 5 and positions == sorted(positions)
    async with database.read() as reader:
        stored = await reader.recent_events(room.room_id, after=positions[0] - 1, upto=positions[-1], limit=10)
        children = await reader.relation_children([parent.event_id])
        hits = await reader.search_events("searchable", room_ids=[room.room_id], keys=["content.body"],
                                          order_by_rank=False, limit=5)
    assert [e.event_id for e in stored] == [e.event_id for e in run]
    assert [c.event_id for c in children] == [run[2].event_id]
    assert [h.stream_pos for h in hits] == [positions[4]]
    # Written again (the room server re-sent them): nothing changes.
    assert await database.write_room_events(_writes(run), local_server="test") == [None] * 5


async def test_more_news_than_one_statement_reads(env: Env) -> None:
    """Past NEWS_IN_ONE_STATEMENT new events the rooms are found first, then
    each room's last events: the same answer."""
    from syncapi.internal.sync import NEWS_IN_ONE_STATEMENT

    room, other = TestRoom(), TestRoom()
    room.join(BOB)
    other.join(BOB)
    await env.send_room(room)
    await env.send_room(other)
    token = env.token(BOB)
    since = await env.next_batch(token)
    flood = [room.message(ALICE, f"flood {i}") for i in range(NEWS_IN_ONE_STATEMENT + 1)]
    await env.send(*flood)
    lone = other.message(ALICE, "lone")
    await env.send(lone)
    body = await env.sync(token, since=since, filter=json.dumps({"room": {"timeline": {"limit": 3}}}))
    assert _timeline(body, room.room_id) == [e.event_id for e in flood[-3:]]
    assert body["rooms"]["join"][room.room_id]["timeline"]["limited"] is True
    assert _timeline(body, other.room_id) == [lone.event_id]
    # A room the timeline filter leaves out still shows it has news (after
    # the flood, and after a single event).
    later = (await env.sync(token, since=since))["next_batch"]
    await env.send(other.message(ALICE, "lone again"))
    for start in (since, later):
        body = await env.sync(token, since=start, filter=json.dumps(
            {"room": {"timeline": {"limit": 3, "not_rooms": [other.room_id]}}}))
        assert _timeline(body, other.room_id) == []
        assert body["rooms"]["join"][other.room_id]["timeline"]["limited"] is True


async def test_read_markers_do_not_make_push_rules_read_again(env: Env) -> None:
    """What push rule evaluation keeps of a room is read again after a
    change of push rules, not after other account data (read markers)."""
    room = TestRoom()
    room.join(BOB)
    room.message(ALICE, "warm up")
    await env.send_room(room)
    await change(env, BOB, "m.fully_read", {"event_id": room.events[-1].event_id}, room_id=room.room_id)
    with StatementLog(env) as after_marker:
        await env.send(room.message(ALICE, "after the marker"))
    assert not any("FROM syncapi_account_data" in s for s in after_marker.statements)

    # Bob no longer wants to be notified of anything: read again, in force.
    await change(env, BOB, "m.push_rules", {"global": {"override": [
        {"rule_id": "silence", "default": False, "enabled": True, "conditions": [], "actions": []}]}})
    with StatementLog(env) as after_rules:
        await env.send(room.message(ALICE, "silenced"))
    assert any("FROM syncapi_account_data" in s for s in after_rules.statements)
    body = await env.sync(env.token(BOB))
    # The two messages before the silence (a read marker is not a receipt).
    assert body["rooms"]["join"][room.room_id]["unread_notifications"]["notification_count"] == 2


async def test_a_stored_filter_is_read_once(env: Env) -> None:
    room = await shared_room(env, BOB)
    token = env.token(BOB)
    created = await env.client.post(f"/_matrix/client/v3/user/{BOB}/filter",
                                    json={"room": {"timeline": {"limit": 1}}},
                                    headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 200, created.text
    filter_id = created.json()["filter_id"]
    since = (await env.sync(token, filter=filter_id))["next_batch"]
    news = [room.message(ALICE, "one"), room.message(ALICE, "two")]
    await env.send(*news)
    with StatementLog(env) as log:
        body = await env.sync(token, since=since, filter=filter_id)
    assert _timeline(body, room.room_id) == [news[1].event_id]
    assert not any("syncapi_filters" in s for s in log.statements)
    # Another user's filter ID is still not theirs.
    carol = env.token(CAROL)
    assert (await env.get("/_matrix/client/v3/sync", carol, filter=filter_id)).status_code == 400
