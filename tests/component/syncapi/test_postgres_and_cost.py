"""The same read model on PostgreSQL, and what an idle long poll costs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from syncapi.storage.tables import metadata
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, running_env


@pytest.mark.postgres
async def test_sync_and_pagination_on_postgres(tmp_path: Path, fresh_postgres_database: str) -> None:
    async with running_env(tmp_path, fresh_postgres_database) as env:
        room = TestRoom()
        room.join(BOB)
        for i in range(25):
            room.message(ALICE, f"pg {i}")
        await env.send_room(room)
        token = env.token(BOB)
        body = await env.sync(token)
        joined = body["rooms"]["join"][room.room_id]
        assert joined["timeline"]["limited"] is True
        assert [e["content"]["body"] for e in joined["timeline"]["events"]] == [f"pg {i}" for i in range(15, 25)]

        invite = room.invite(ALICE, CAROL)
        last = room.message(ALICE, "after")
        await env.send(invite, last, txn=None)
        later = await env.sync(token, since=body["next_batch"])
        assert [e["event_id"] for e in later["rooms"]["join"][room.room_id]["timeline"]["events"]] == [
            invite.event_id, last.event_id]
        assert room.room_id in (await env.sync(env.token(CAROL)))["rooms"]["invite"]

        seen: list[str] = [e["event_id"] for e in joined["timeline"]["events"]]
        from_token = joined["timeline"]["prev_batch"]
        while True:
            page = (await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/messages", token,
                                  dir="b", limit=6, **{"from": from_token})).json()
            seen = [e["event_id"] for e in reversed(page["chunk"])] + seen
            if "end" not in page:
                break
            from_token = page["end"]
        assert seen == [e.event_id for e in room.events[:-2]]

        members = (await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/members", token,
                                 membership="invite")).json()["chunk"]
        assert [m["state_key"] for m in members] == [CAROL]


async def test_idle_incremental_sync_does_not_touch_the_database(env: Env) -> None:
    """An idle incremental /sync costs the same in 1 room or 40: no query at all."""
    token = env.token(BOB)
    rooms = []
    for i in range(40):
        room = TestRoom()
        room.join(BOB)
        room.message(ALICE, f"room {i}")
        rooms.append(room)
        await env.send(*room.events, wait=i == 39)
    await env.wait_for_events([r.events[-1].event_id for r in rooms])
    since = (await env.sync(token))["next_batch"]

    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The component's once-a-period read of the position is not the request's.
        if "syncapi_stream_position" not in statement and not statement.startswith("BEGIN"):
            statements.append(statement)

    engine = env.syncapi.database.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        body = await env.sync(token, since=since, timeout=50)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert body["rooms"]["join"] == {}
    assert statements == []


async def test_tables_match_the_migration(env: Env) -> None:
    """The Core tables the code builds statements from describe the migrated schema."""
    def describe(sync_conn: Any) -> dict[str, tuple[set[str], set[str]]]:
        from sqlalchemy import inspect
        inspector = inspect(sync_conn)
        return {name: ({c["name"] for c in inspector.get_columns(name)},
                       {str(i["name"]) for i in inspector.get_indexes(name)})
                for name in metadata.tables}

    async with env.syncapi.database.database.connect() as conn:
        found = await conn.run_sync(describe)
    for name, table in metadata.tables.items():
        columns, indexes = found[name]
        assert columns == {c.name for c in table.columns}, name
        # Unique constraints show up as automatic indexes on SQLite; compare the named ones.
        assert {i for i in indexes if not i.startswith("sqlite_autoindex")} == {
            str(i.name) for i in table.indexes}, name


async def test_writes_by_another_instance_wake_long_polls(env: Env) -> None:
    """Another sync API instance sharing the database wrote an event (its
    consumer had the room's partition): this instance's long poll still
    returns it, found through the database's position."""
    from common.storage import open_database
    from syncapi.storage.database import NewEvent, SyncDatabase

    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    token = env.token(BOB)
    since = (await env.sync(token))["next_batch"]

    poll = asyncio.create_task(env.sync(token, since=since, timeout=10000))
    await asyncio.sleep(0.2)
    assert not poll.done()
    message = room.message(ALICE, "written elsewhere")
    # Straight into the database through another connection, as the other instance's consumer would.
    url = env.syncapi.database.database.engine.url.render_as_string(hide_password=False)
    other = SyncDatabase(await open_database(url, "syncapi"))
    try:
        await other.write_room_event(
            NewEvent(event=message, historical=False, history_visibility="shared"),
            adds_state_event_ids=[], removes_state_event_ids=[], adds_state_events=[],
            room_stream_position=99, local_server="test")
    finally:
        await other.close()
    body = await asyncio.wait_for(poll, 5)
    assert [e["event_id"] for e in body["rooms"]["join"][room.room_id]["timeline"]["events"]] == [
        message.event_id]
    # And the next token is past it: idle again.
    again = await env.sync(token, since=body["next_batch"])
    assert again["rooms"]["join"] == {}


async def test_incremental_sync_cost_follows_the_news_not_the_rooms(env: Env) -> None:
    """One new message: the same number of queries for a user in 3 rooms and one in 30."""
    few, many = env.token(BOB), env.token(CAROL)
    shared = TestRoom()
    shared.join(BOB)
    shared.join(CAROL)
    await env.send_room(shared)
    for i in range(30):
        room = TestRoom()
        room.join(CAROL)
        if i < 2:
            room.join(BOB)
        room.message(ALICE, f"room {i}")
        await env.send(*room.events, wait=False)
        await env.wait_for_events([room.events[-1].event_id])
    since_few = (await env.sync(few))["next_batch"]
    since_many = (await env.sync(many))["next_batch"]
    # Carol's first sync made her present, news for Bob (presence is read only when it moved).
    since_few = (await env.sync(few, since=since_few))["next_batch"]
    await env.send(shared.message(ALICE, "news"))

    engine = env.syncapi.database.database.engine.sync_engine

    async def statements_for(token: str, since: str) -> int:
        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "syncapi_stream_position" not in statement and not statement.startswith("BEGIN"):
                statements.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            body = await env.sync(token, since=since)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert list(body["rooms"]["join"]) == [shared.room_id]
        return len(statements)

    assert await statements_for(few, since_few) == await statements_for(many, since_many)
