"""The SQLite drivers (common/sqlite_connection.py): the fused aiosqlite
connection (one trip to the connection's thread per statement) and the inline
one (sqlite3 on the loop's thread), with the same answers as aiosqlite's own
cursor for everything SQLAlchemy asks of a cursor; and how the inline driver
waits for SQLite's write lock without ever sleeping on the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from common import sqlite_connection
from common.sqlite_connection import FusedConnection
from common.storage import Database, create_engine_for, open_database
from tests.storage.fixture_schema import FIXTURE, things


@pytest.mark.parametrize("fused", [True, False])
async def test_statements_answer_the_same_with_every_driver(
    tmp_path: Path, fused: bool, sqlite_driver: str,
) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'x.db'}", fused_statements=fused)
    threads_before = set(threading.enumerate())
    try:
        async with engine.begin() as conn:
            raw = await conn.get_raw_connection()
            if sqlite_driver == "inline":
                # No aiosqlite connection, and no thread for it.
                assert isinstance(raw.driver_connection, sqlite3.Connection)
                # (Threads that end meanwhile, say an earlier test's, do not count.)
                assert set(threading.enumerate()) - threads_before == set()
            else:
                assert isinstance(raw.driver_connection, FusedConnection) is fused
            await conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
            await conn.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": f"v{i}"} for i in range(10)])
            inserted = await conn.execute(text("INSERT INTO t (v) VALUES ('last') RETURNING n"))
            assert inserted.scalar_one() == 11
            no_returning = await conn.execute(text("INSERT INTO t (v) VALUES ('lastrowid')"))
            assert no_returning.lastrowid == 12
            updated = await conn.execute(text("UPDATE t SET v = v || '!' WHERE n <= 3"))
            assert updated.rowcount == 3
            rows = (await conn.execute(text("SELECT n, v FROM t ORDER BY n"))).all()
            assert [tuple(r) for r in rows[:4]] == [(1, "v0!"), (2, "v1!"), (3, "v2!"), (4, "v3")]
            assert len(rows) == 12
            assert (await conn.execute(text("SELECT v FROM t WHERE n = 4"))).first() == ("v3",)
            assert (await conn.execute(text("SELECT v FROM t WHERE n = 99"))).first() is None
            some = await conn.execute(text("SELECT n FROM t ORDER BY n"))
            assert [r[0] for r in some.fetchmany(5)] == [1, 2, 3, 4, 5]
            assert some.fetchone() == (6,)
            assert [r[0] for r in some.fetchall()] == list(range(7, 13))
            # A streamed (server-side) result, fetched a few rows at a time.
            streamed = await conn.stream(text("SELECT n FROM t ORDER BY n"))
            seen: list[int] = []
            async for partition in streamed.partitions(5):
                seen.extend(row[0] for row in partition)
            assert seen == list(range(1, 13))
            # A failing statement raises as usual and leaves the connection usable.
            with pytest.raises(IntegrityError):
                await conn.execute(text("INSERT INTO t (v) VALUES ('v4')"))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 12
        # A rolled back transaction leaves nothing behind.
        async with engine.connect() as conn:
            async with conn.begin() as tx:
                await conn.execute(text("DELETE FROM t"))
                await tx.rollback()
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 12
    finally:
        await engine.dispose()


async def test_a_statement_is_one_trip_to_the_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trips: list[str] = []
    original: Any = FusedConnection._execute

    async def counting(self: FusedConnection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(FusedConnection, "_execute", counting)
    engine = create_engine_for(f"sqlite:///{tmp_path / 'x.db'}", fused_statements=True, sqlite_driver="thread")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            trips.clear()
            rows = (await conn.execute(text("SELECT :a, :b"), {"a": 1, "b": "two"})).all()
            assert [tuple(r) for r in rows] == [(1, "two")]
            assert trips == ["_execute_and_fetch"]
    finally:
        await engine.dispose()


async def test_unknown_driver_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown SQLite driver"):
        create_engine_for(f"sqlite:///{tmp_path / 'x.db'}", sqlite_driver="process")


# --------------------------------------------------------------------------- waiting for the write lock
# Tests named test_inline_* run with the inline driver only (tests/storage/conftest.py).


async def open_db(path: Path) -> Database:
    return await open_database(f"sqlite:///{path}", "storagetest", migrations_root=FIXTURE)


async def test_inline_write_outside_a_write_transaction_is_an_error(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "w.db")
    try:
        async with db.connect() as conn:
            for statement in (
                sa.insert(things).values(thing_id="a", name="x"),
                sa.update(things).values(hits=1),
                sa.delete(things),
                text("  create table other (x int)"),
            ):
                with pytest.raises(OperationalError, match="outside a write transaction"):
                    await conn.execute(statement)
            # Reads still work in the same transaction.
            assert (await conn.execute(sa.select(sa.func.count()).select_from(things))).scalar_one() == 0
        async with db.transaction() as conn:
            await conn.execute(sa.insert(things).values(thing_id="a", name="x"))
            await conn.execute(sa.update(things).values(hits=2))
        async with db.connect() as conn:
            assert (await conn.execute(sa.select(things.c.hits))).scalar_one() == 2
            # The write transaction's permission ended with it.
            with pytest.raises(OperationalError, match="outside a write transaction"):
                await conn.execute(sa.update(things).values(hits=3))
    finally:
        await db.close()


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another process's writer, as far as SQLite can tell: its own connection holding the lock."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE storagetest_things SET hits = hits + 100")
    return other


async def test_writer_waits_for_another_processs_lock_without_blocking_the_loop(
    tmp_path: Path, sqlite_driver: str,
) -> None:
    db = await open_db(tmp_path / "l.db")
    try:
        async with db.transaction() as conn:
            await conn.execute(sa.insert(things).values(thing_id="a", name="x"))
        other = hold_write_lock(tmp_path / "l.db")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        async def release_later() -> None:
            await asyncio.sleep(0.3)
            other.execute("COMMIT")

        ticking = asyncio.create_task(ticker())
        releasing = asyncio.create_task(release_later())
        started = time.monotonic()
        async with asyncio.timeout(10), db.transaction() as conn:
            waited = time.monotonic() - started
            await conn.execute(sa.update(things).values(hits=things.c.hits + 1))
        await releasing
        ticking.cancel()
        assert waited >= 0.25
        if sqlite_driver == "inline":
            # The loop ran while the writer waited: it never slept in SQLite's busy handler.
            assert ticks >= 20
        async with db.connect() as conn:
            assert (await conn.execute(sa.select(things.c.hits))).scalar_one() == 101
        other.close()
    finally:
        await db.close()


async def test_inline_writer_gives_up_after_the_lock_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = await open_db(tmp_path / "g.db")
    other = hold_write_lock(tmp_path / "g.db")
    try:
        assert isinstance(db.engine.dialect.dbapi, sqlite_connection.InlineDBAPI)
        monkeypatch.setattr(db.engine.dialect.dbapi, "lock_wait_ms", 200)
        await db.engine.dispose()  # the next connection takes the shorter wait
        started = time.monotonic()
        with pytest.raises(OperationalError, match="locked"):
            async with asyncio.timeout(10), db.transaction():
                pass
        assert 0.15 <= time.monotonic() - started < 5
    finally:
        other.execute("ROLLBACK")
        other.close()
        await db.close()


async def test_inline_deferred_write_under_another_writer_fails_at_once(tmp_path: Path) -> None:
    # Without strict_writes (a raw engine), a write that did not take the lock up
    # front meets the other writer's lock: SQLITE_BUSY at once, not a sleep on the loop.
    path = tmp_path / "d.db"
    engine = create_engine_for(f"sqlite:///{path}", sqlite_driver="inline")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE storagetest_things (thing_id TEXT, hits INT)"))
        other = hold_write_lock(path)
        started = time.monotonic()
        with pytest.raises(OperationalError, match="locked"):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO storagetest_things VALUES ('b', 0)"))
        assert time.monotonic() - started < 1
        other.execute("ROLLBACK")
        other.close()
    finally:
        await engine.dispose()


async def test_readers_and_writers_interleave_on_one_loop(tmp_path: Path) -> None:
    # Many tasks on one loop reading and writing through one Database: nothing
    # waits on SQLite's lock, every write lands, every read sees a consistent count.
    db = await open_db(tmp_path / "m.db")
    try:
        async def writer(i: int) -> None:
            for j in range(5):
                async with db.transaction() as conn:
                    await conn.execute(sa.insert(things).values(thing_id=f"{i}-{j}", name="w"))
                    await asyncio.sleep(0)

        async def reader() -> list[int]:
            counts = []
            for _ in range(10):
                async with db.connect() as conn:
                    counts.append((await conn.execute(
                        sa.select(sa.func.count()).select_from(things))).scalar_one())
                await asyncio.sleep(0)
            return counts

        async with asyncio.timeout(30):
            readers = [asyncio.create_task(reader()) for _ in range(4)]
            await asyncio.gather(*(writer(i) for i in range(8)), *readers)
        for done in readers:
            counts = done.result()
            assert counts == sorted(counts)
        async with db.connect() as conn:
            assert (await conn.execute(sa.select(sa.func.count()).select_from(things))).scalar_one() == 40
    finally:
        await db.close()


async def test_database_access_lets_other_tasks_run(tmp_path: Path) -> None:
    # Inline statements never wait for anything; leaving a connection still yields
    # to the loop (SQLAlchemy closes it in a task of its own), so a task that only
    # reads or writes in a loop cannot starve the others.
    db = await open_db(tmp_path / "y.db")
    try:
        others_ran = 0

        async def other() -> None:
            nonlocal others_ran
            others_ran += 1

        for i in range(3):
            before = others_ran
            waiting = asyncio.create_task(other())
            async with db.connect() as conn:
                await conn.execute(sa.select(sa.func.count()).select_from(things))
            assert others_ran == before + 1
            await waiting
            waiting = asyncio.create_task(other())
            async with db.transaction() as conn:
                await conn.execute(sa.insert(things).values(thing_id=f"t{i}", name="y"))
            assert others_ran == before + 2
            await waiting
    finally:
        await db.close()
