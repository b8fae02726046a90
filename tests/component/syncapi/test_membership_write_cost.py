"""A membership change (a join to a large room, a leave, a display name
change) takes the output consumer's one-by-one write path: its statements run
as prebuilt statements (common/prebuilt.py), not through SQLAlchemy's
per-statement machinery (~120 us of CPU each on asyncpg), with the same
effects: the timeline and the state, the invite it ends, the user
directory, the state history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from matrixlib.events import MEMBER, Event
from syncapi.storage.tables import current_state as state_t
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, on_each_database
from tests.component.syncapi.test_output_batches import records_of

# The tables every membership change writes or reads in its transaction.
WRITE_PATH_TABLES = ("syncapi_events", "syncapi_current_room_state", "syncapi_state_history",
                     "syncapi_invites", "syncapi_room_positions", "syncapi_stream_position",
                     "syncapi_user_directory", "syncapi_account_data")


async def statements_through_sqlalchemy(env: Env, new_event: Event) -> list[str]:
    """The statements of the write path's tables that went through
    SQLAlchemy's ``Connection.execute`` while the sync API's output consumer
    applied the event's entry (besides its periodic read of the stream
    positions), and any savepoint it took."""
    through: list[str] = []

    def savepoint(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            through.append(statement)  # two more round trips for every state change

    def record(conn: Any, clause: Any, *args: Any) -> None:
        sql = " ".join(str(clause).split())
        if sql.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            through.append(sql)
        elif any(table in sql for table in WRITE_PATH_TABLES) and not sql.startswith(
                "SELECT syncapi_stream_position.stream_name, syncapi_stream_position.position"):
            through.append(sql)

    engine = env.syncapi.database.database.engine.sync_engine
    event.listen(engine, "before_execute", record)
    event.listen(engine, "before_cursor_execute", savepoint)
    try:
        await env.syncapi.consumer.handle_records(records_of([env.new_room_event(new_event)], new_event.room_id))
    finally:
        event.remove(engine, "before_execute", record)
        event.remove(engine, "before_cursor_execute", savepoint)
    return through


@on_each_database
async def test_membership_changes_bypass_sqlalchemy_with_the_same_effects(env: Env) -> None:
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    invite = room.invite(ALICE, CAROL)
    await env.send_room(room)
    carol, bob = env.token(CAROL), env.token(BOB)
    carol_before = await env.sync(carol)
    assert room.room_id in carol_before["rooms"]["invite"]
    bob_since = await env.next_batch(bob)

    # Carol joins (with a display name): her invite ends, everyone sees the join.
    join = room.build(MEMBER, {"membership": "join", "displayname": "Carol C"}, sender=CAROL, state_key=CAROL)
    assert await statements_through_sqlalchemy(env, join) == []
    carol_after = await env.sync(carol, since=carol_before["next_batch"])
    assert room.room_id in carol_after["rooms"]["join"]
    assert room.room_id not in carol_after["rooms"].get("invite", {})
    bob_news = await env.sync(bob, since=bob_since)
    timeline = bob_news["rooms"]["join"][room.room_id]["timeline"]["events"]
    assert [e["event_id"] for e in timeline] == [join.event_id]
    # The join replaced the invite: its unsigned says so.
    assert timeline[0]["unsigned"]["replaces_state"] == invite.event_id
    assert timeline[0]["unsigned"]["prev_content"] == {"membership": "invite"}
    async with env.syncapi.database.read() as reader:
        assert await reader.active_invites(CAROL, after=0, upto=10**9) == []
        retired = await reader.retired_invites(CAROL, after=0, upto=10**9)
        assert [(i.event_id, i.retired_membership, i.retired_by_event_id) for i in retired] == [
            (invite.event_id, "join", join.event_id)]
        entry = await reader.current_state_entry(room.room_id, MEMBER, CAROL)
        assert entry is not None and entry.event_id == join.event_id and entry.membership == "join"
        found = await reader.search_user_directory(ALICE, ["carol"], 10)
        assert [(d.user_id, d.display_name) for d in found] == [(CAROL, "Carol C")]

    # Carol leaves: the join goes to the state history, in force until the leave.
    leave = room.leave(CAROL)
    assert await statements_through_sqlalchemy(env, leave) == []
    async with env.syncapi.database.read() as reader:
        stored = await reader.events_by_ids([join.event_id, leave.event_id])
        join_pos, leave_pos = stored[join.event_id].stream_pos, stored[leave.event_id].stream_pos
        members_at = {(e.state_key, e.membership) for e in await reader.state_at(room.room_id, leave_pos - 1)
                      if e.type == MEMBER}
        assert (CAROL, "join") in members_at
        members_now = {(e.state_key, e.membership) for e in await reader.state_at(room.room_id, leave_pos)
                       if e.type == MEMBER}
        assert (CAROL, "leave") in members_now and (CAROL, "join") not in members_now
        history = await reader.conn.execute(state_t.state_history.select().where(
            state_t.state_history.c.state_key == CAROL, state_t.state_history.c.event_id == join.event_id))
        assert [(r.added_pos, r.removed_pos) for r in history] == [(join_pos, leave_pos)]


@on_each_database
async def test_push_rules_failing_in_the_database_keep_the_events(env: Env, monkeypatch: Any) -> None:
    """The push rules run in the events' transaction, without a savepoint: a
    statement of theirs that fails (on PostgreSQL it aborts the whole
    transaction, which is then written again without them) loses the
    notifications, not the events, and the room's next entries are written
    as before."""
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    await env.send_room(room)
    evaluator = env.syncapi.consumer.push_evaluator
    assert evaluator is not None
    failures: list[str] = []

    async def failing(reader: Any, *args: Any, **kwargs: Any) -> list[Any]:
        try:
            await reader.conn.execute(text("SELECT no_such_column FROM syncapi_events"))
        except DBAPIError as error:
            failures.append(type(error).__name__)
            raise
        raise AssertionError("the statement should have failed")

    monkeypatch.setattr(evaluator, "evaluate", failing)
    join = room.join(CAROL)
    message = room.message(BOB, "hello")
    await env.syncapi.consumer.handle_records(records_of([env.new_room_event(join)], room.room_id))
    await env.syncapi.consumer.handle_records(records_of([env.new_room_event(message)], room.room_id))
    assert len(failures) == 2
    monkeypatch.undo()
    later = room.message(CAROL, "again")
    await env.syncapi.consumer.handle_records(records_of([env.new_room_event(later)], room.room_id))
    async with env.syncapi.database.read() as reader:
        stored = await reader.events_by_ids([join.event_id, message.event_id, later.event_id])
        assert all(not stored[e.event_id].state_only for e in (join, message, later))
        entry = await reader.current_state_entry(room.room_id, MEMBER, CAROL)
        assert entry is not None and entry.event_id == join.event_id
    body = await env.sync(env.token(CAROL))
    timeline = body["rooms"]["join"][room.room_id]["timeline"]["events"]
    assert [e["event_id"] for e in timeline][-3:] == [join.event_id, message.event_id, later.event_id]
    # Alice's notification for Bob's message was lost with the failed rules; Carol's message notifies her.
    notified = (await env.get("/_matrix/client/v3/notifications", env.token(ALICE))).json()["notifications"]
    assert [n["event"]["event_id"] for n in notified] == [later.event_id]


@on_each_database
async def test_a_lone_state_event_reads_the_entry_it_replaces_with_the_rooms_last_event(env: Env) -> None:
    """The room's last applied event, which of the entry's events are stored
    and the current entry the state event replaces come in one statement:
    no separate read of the current state (a join, a rejoin, a name change)."""
    room = TestRoom("12", creator=ALICE)
    room.join(BOB)
    await env.send_room(room)
    engine = env.syncapi.database.database.engine.sync_engine
    for new_event in (room.join(CAROL), room.leave(CAROL), room.join(CAROL),
                      room.build(MEMBER, {"membership": "join", "displayname": "C"}, sender=CAROL, state_key=CAROL)):
        selects: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            sql = " ".join(statement.split())
            if sql.startswith("SELECT"):
                selects.append(sql)  # noqa: B023 (removed below, before the next event)

        env.syncapi.database._last_written.clear()  # a run of messages need not read at all
        event.listen(engine, "before_cursor_execute", record)
        try:
            await env.syncapi.consumer.handle_records(records_of([env.new_room_event(new_event)], room.room_id))
        finally:
            event.remove(engine, "before_cursor_execute", record)
        state_reads = [s for s in selects if "syncapi_current_room_state" in s]
        assert len(state_reads) == 1 and "syncapi_room_positions" in state_reads[0], (new_event.content, state_reads)
    body = await env.sync(env.token(BOB))
    timeline = body["rooms"]["join"][room.room_id]["timeline"]["events"]
    assert [e["content"].get("displayname") for e in timeline[-4:]] == [None, None, None, "C"]
    # Each replaced the one before: prev_content as before the merge.
    assert [e["unsigned"].get("prev_content", {}).get("membership") for e in timeline[-4:]] == [
        None, "join", "leave", "join"]
