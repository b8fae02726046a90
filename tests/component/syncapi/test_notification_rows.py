"""syncapi_notifications rows stored from tuples (StoredNotification is a
named tuple in the table's column order): the same rows on both SQLite
drivers and PostgreSQL, a row stored again left as it was, one statement
for many rows, none of it through SQLAlchemy on the inline SQLite driver;
and what GET /notifications and /sync's unread counts answer for a room
of many local members."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from common import storage
from common.storage import Database, open_database
from syncapi.storage.tables import notifications as notifications_t
from syncapi.storage.tables.notifications import StoredNotification
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, Env, on_each_database
from tests.component.syncapi.test_ephemeral import receipt
from tests.component.syncapi.test_notifications import counts, mention, unread

ROOM = "!room:test"
OTHER_ROOM = "!other:test"
NOTIFY = '["notify",{"set_tweak":"sound","value":"default"}]'
HIGHLIGHT = '["notify",{"set_tweak":"highlight"}]'


@pytest.fixture(params=["inline", "thread", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> AsyncIterator[Database]:
    if request.param == "postgres":
        url: str = request.getfixturevalue("fresh_postgres_database")
    else:
        monkeypatch.setattr(storage, "SQLITE_DRIVER", request.param)
        url = f"sqlite:///{tmp_path / 'syncapi.db'}"
    database = await open_database(url, "syncapi")
    try:
        yield database
    finally:
        await database.close()


def rows_of_event(stream_pos: int, users: int, *, room_id: str = ROOM, thread_id: str = "",
                  highlighted: frozenset[int] = frozenset()) -> list[StoredNotification]:
    """One event's rows the way PushEvaluator.evaluate makes them (tuple.__new__)."""
    return [tuple.__new__(StoredNotification, (
        f"@user{i:03d}:test", stream_pos, room_id, f"$event{stream_pos}", thread_id,
        HIGHLIGHT if i in highlighted else NOTIFY, i in highlighted, 1_700_000_000_000 + stream_pos))
        for i in range(users)]


async def stored(db: Database) -> list[tuple[Any, ...]]:
    n = notifications_t.notifications.c
    async with db.connect() as conn:
        result = await conn.execute(sa.select(*notifications_t.notifications.c)
                                    .order_by(n.user_id, n.stream_pos))
        return [tuple(row) for row in result]


async def insert(db: Database, rows: list[StoredNotification]) -> list[tuple[str, bool]]:
    """Stores the rows in a transaction; answers the statements SQLAlchemy
    ran for it (SQL, executemany)."""
    ran: list[tuple[str, bool]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        ran.append((statement, executemany))

    async with db.transaction() as conn:
        sync = conn.sync_connection
        assert sync is not None
        sa.event.listen(sync, "before_cursor_execute", before)
        try:
            await notifications_t.insert_notifications(conn, rows)
        finally:
            sa.event.remove(sync, "before_cursor_execute", before)
    return ran


async def test_rows_are_stored_as_given_and_read_back_equal(db: Database) -> None:
    first = rows_of_event(10, 40, highlighted=frozenset({3, 7}))
    threaded = rows_of_event(11, 40, thread_id="$root")
    other = rows_of_event(12, 5, room_id=OTHER_ROOM)
    await insert(db, first + threaded + other)
    expected = sorted(first + threaded + other)
    # Booleans and integers as the table's types give them, on every driver.
    assert await stored(db) == [tuple(row) for row in expected]
    assert all(isinstance(row[6], bool) for row in await stored(db))
    async with db.connect() as conn:
        page = await notifications_t.select_page(conn, "@user003:test", before=None, limit=10, only_highlight=False)
        assert page == [other[3], threaded[3], first[3]]
        assert all(type(row) is StoredNotification for row in page)
        assert page[2].highlight is True and page[2].actions_json == HIGHLIGHT
        assert await notifications_t.select_page(conn, "@user003:test", before=12, limit=10,
                                                 only_highlight=True) == [first[3]]
        counted = await notifications_t.select_unread_counts(conn, "@user007:test", [ROOM, OTHER_ROOM])
        assert sorted(counted) == [(ROOM, "", 1, 1), (ROOM, "$root", 1, 0)]
        counted = await notifications_t.select_unread_counts(conn, "@user004:test", [ROOM, OTHER_ROOM])
        assert sorted(counted) == [(OTHER_ROOM, "", 1, 0), (ROOM, "", 1, 0), (ROOM, "$root", 1, 0)]


async def test_rows_stored_again_are_left_as_they_are(db: Database) -> None:
    rows = rows_of_event(20, 30)
    await insert(db, rows)
    before = await stored(db)
    # The same entry applied again, and rows for the same keys with other
    # content (a row already stored wins), alongside one new row.
    changed = [row._replace(actions_json=HIGHLIGHT, highlight=True, event_id="$other") for row in rows]
    fresh = rows_of_event(21, 1)
    await insert(db, rows)
    await insert(db, changed + fresh)
    assert await stored(db) == sorted([*before, tuple(fresh[0])])
    async with db.connect() as conn:
        assert await notifications_t.select_unread_counts(conn, "@user000:test", [ROOM]) == [(ROOM, "", 2, 0)]


async def test_many_rows_are_one_statement_and_none_through_sqlalchemy_inline(db: Database) -> None:
    rows = rows_of_event(30, 200)
    async with db.connect() as conn:
        inline = storage.SQLITE_DRIVER == "inline" and conn.dialect.name == "sqlite"
    ran = await insert(db, rows)
    if inline:
        # Straight to sqlite3's executemany: SQLAlchemy runs nothing (and
        # builds no parameter dict per row).
        assert ran == []
    else:
        # One executemany through SQLAlchemy (PostgreSQL, the thread driver).
        [(sql, many)] = ran
        assert sql.startswith("INSERT INTO syncapi_notifications") and many
    assert len(await stored(db)) == 200
    assert await insert(db, []) == []


def member(index: int) -> str:
    return f"@member{index:02d}:test"


@on_each_database
async def test_many_members_see_the_same_notifications_and_counts(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    members = [member(i) for i in range(24)]
    for user_id in members:
        room.join(user_id)
    await env.send_room(room)
    sent = [room.message(BOB, "hello all"), mention(room, BOB, member(5), "you, member 5"),
            room.message(BOB, "bye")]
    await env.send(*sent)
    # The last message's output entry applied again: nothing stored twice.
    marker = room.message(BOB, "marker")
    await env.append(env.new_room_event(marker), room.room_id)
    entry = env.new_room_event(room.message(BOB, "again"))
    await env.append(entry, room.room_id)
    await env.append(entry, room.room_id)
    again = entry.new_room_event.event.event_id
    await env.wait_for_events([again])
    expected = [again, marker.event_id] + [e.event_id for e in reversed(sent)]
    for user_id in [ALICE, *members]:
        token = env.token(user_id)
        body = (await env.get("/_matrix/client/v3/notifications", token)).json()
        assert [n["event"]["event_id"] for n in body["notifications"]] == expected, user_id
        highlighted = [n["event"]["event_id"] for n in body["notifications"]
                       if {"set_tweak": "highlight"} in n["actions"]]
        assert highlighted == ([sent[1].event_id] if user_id == member(5) else [])
        assert all(n["room_id"] == room.room_id and not n["read"] for n in body["notifications"])
        assert unread(await env.sync(token), room.room_id) == counts(5, 1 if user_id == member(5) else 0)
    assert (await env.get("/_matrix/client/v3/notifications", env.token(BOB))).json()["notifications"] == []
    await receipt(env, room.room_id, member(5), "m.read", sent[2].event_id)
    assert unread(await env.sync(env.token(member(5))), room.room_id) == counts(2, 0)
    assert unread(await env.sync(env.token(member(6))), room.room_id) == counts(5, 0)


async def test_a_bad_row_raises_as_sqlalchemy_raises_it(db: Database) -> None:
    good = rows_of_event(40, 3)
    bad = good[1]._replace(room_id=None)  # type: ignore[arg-type]
    with pytest.raises(sa.exc.IntegrityError):
        await insert(db, [good[0], bad, good[2]])
    # The failed transaction stored none of them.
    assert await stored(db) == []
