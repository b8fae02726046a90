"""common.prebuilt.PrebuiltStatement: the same rows and effects whether it
runs on the inline SQLite driver's own cursor or through SQLAlchemy (the
thread driver, PostgreSQL), inside the caller's transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from common import storage
from common.prebuilt import PrebuiltStatement
from common.sqlite_connection import WriteOutsideWriteTransaction
from common.storage import Database, open_database
from tests.storage.fixture_schema import FIXTURE, things

INSERT = PrebuiltStatement(things.insert().returning(things.c.thing_id, things.c.hits),
                           ("thing_id", "name", "hits"))
INSERT_PLAIN = PrebuiltStatement(things.insert(), ("thing_id", "name", "hits"))
RENAME = PrebuiltStatement(things.update().where(things.c.thing_id == sa.bindparam("key"))
                           .values(name=sa.bindparam("new_name")))
BY_NAME = PrebuiltStatement(sa.select(things.c.thing_id, things.c.hits).where(things.c.name == sa.bindparam("name"))
                            .order_by(things.c.thing_id))


BY_IDS = PrebuiltStatement(
    sa.select(things.c.thing_id, sa.literal(7).label("seven"))
    .where(things.c.thing_id.in_(sa.bindparam("ids", expanding=True)))
    .where(things.c.hits >= sa.bindparam("least"))
    .order_by(things.c.thing_id))


async def test_rows_scalar_and_many_inside_the_transaction(db: Database, sqlite_driver: str) -> None:
    async with db.transaction() as conn:
        inline = PrebuiltStatement.runs_inline(conn)
        assert await INSERT.rows(conn, {"thing_id": "a", "name": "x", "hits": 3}) == [("a", 3)]
        assert await INSERT.scalar(conn, {"hits": 4, "name": "y", "thing_id": "b"}) == "b"
        await INSERT_PLAIN.execute_many(conn, [{"thing_id": f"m{i}", "name": "many", "hits": i} for i in range(3)])
        await INSERT_PLAIN.execute_many(conn, [])
        await RENAME.execute(conn, {"key": "a", "new_name": "many"})
        # Read back through SQLAlchemy in the same transaction: the writes are there.
        seen = (await conn.execute(sa.select(things.c.thing_id).where(things.c.name == "many")
                                   .order_by(things.c.thing_id))).scalars().all()
        assert seen == ["a", "m0", "m1", "m2"]
        assert await BY_NAME.rows(conn, {"name": "many"}) == [("a", 3), ("m0", 0), ("m1", 1), ("m2", 2)]
        assert await BY_NAME.scalar(conn, {"name": "nobody"}) is None
    on_sqlite = db.dialect_name == "sqlite"
    assert inline == (on_sqlite and sqlite_driver == "inline")
    async with db.connect() as conn:
        assert await BY_NAME.rows(conn, {"name": "y"}) == [("b", 4)]


async def test_a_rolled_back_transaction_takes_its_writes_along(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await INSERT_PLAIN.execute_many(conn, [{"thing_id": "gone", "name": "n", "hits": 1}])
            raise RuntimeError("roll back")
    async with db.connect() as conn:
        assert await BY_NAME.rows(conn, {"name": "n"}) == []


async def test_a_constraint_violation_raises_as_sqlalchemy_does(db: Database) -> None:
    # IntegrityError, a DBAPIError, on every path (callers retry on DBAPIError).
    with pytest.raises(sa.exc.IntegrityError):
        async with db.transaction() as conn:
            await INSERT_PLAIN.execute_many(conn, [{"thing_id": "k", "name": "n", "hits": 1}] * 2)
    with pytest.raises(sa.exc.IntegrityError):
        async with db.transaction() as conn:
            await INSERT.rows(conn, {"thing_id": "k2", "name": "n", "hits": 1})
            await INSERT.rows(conn, {"thing_id": "k2", "name": "n", "hits": 1})


async def test_inline_a_write_outside_a_write_transaction_is_refused(tmp_path: Path) -> None:
    assert storage.SQLITE_DRIVER == "inline"
    db = await open_database(f"sqlite:///{tmp_path / 'p.db'}", "storagetest", migrations_root=FIXTURE)
    try:
        async with db.connect() as conn:
            assert PrebuiltStatement.runs_inline(conn)
            with pytest.raises(sa.exc.OperationalError) as raised:
                await INSERT.rows(conn, {"thing_id": "w", "name": "n", "hits": 1})
            assert isinstance(raised.value.orig, WriteOutsideWriteTransaction)
    finally:
        await db.close()


async def test_expanding_lists_and_the_statement_s_own_values(db: Database) -> None:
    async with db.transaction() as conn:
        await INSERT_PLAIN.execute_many(conn, [{"thing_id": f"t{i}", "name": "n", "hits": i} for i in range(5)])
    async with db.connect() as conn:
        assert await BY_IDS.rows(conn, {"ids": ["t1", "t3", "nope"], "least": 0}) == [("t1", 7), ("t3", 7)]
        assert await BY_IDS.rows(conn, {"ids": ["t0", "t1", "t2", "t4"], "least": 2}) == [("t2", 7), ("t4", 7)]
        # The same lengths again (the expanded SQL is kept), and an empty list.
        assert await BY_IDS.rows(conn, {"ids": ["t4", "t0", "t1"], "least": 0}) == [("t0", 7), ("t1", 7), ("t4", 7)]
        assert await BY_IDS.rows(conn, {"ids": [], "least": 0}) == []


NOT_IN = PrebuiltStatement(
    sa.select(things.c.thing_id).where(things.c.thing_id.not_in(sa.bindparam("ids", expanding=True)))
    .order_by(things.c.thing_id))


async def test_not_in_and_empty_lists(db: Database) -> None:
    async with db.transaction() as conn:
        await INSERT_PLAIN.execute_many(conn, [{"thing_id": f"t{i}", "name": "n", "hits": i} for i in range(3)])
    async with db.connect() as conn:
        assert await NOT_IN.rows(conn, {"ids": ["t1"]}) == [("t0",), ("t2",)]
        assert await NOT_IN.rows(conn, {"ids": []}) == [("t0",), ("t1",), ("t2",)]
        assert await BY_IDS.rows(conn, {"ids": [], "least": 0}) == []


@pytest.mark.postgres
async def test_on_asyncpg_statements_bypass_sqlalchemy_in_its_transaction(fresh_postgres_database: str) -> None:
    db = await open_database(fresh_postgres_database, "storagetest", migrations_root=FIXTURE)
    try:
        async with db.transaction() as conn:
            assert PrebuiltStatement._asyncpg_connection(conn) is not None
            seen: list[str] = []

            def executed(*args: object) -> None:
                seen.append(str(args[2]))

            sync = conn.sync_connection
            assert sync is not None
            sa.event.listen(sync.engine, "before_cursor_execute", executed)
            try:
                # The first statement of the transaction: it begins it.
                await INSERT_PLAIN.execute_many(conn, [{"thing_id": "p", "name": "pg", "hits": 1}])
                # One prepared statement for every list length: ANY($n).
                assert await BY_IDS.rows(conn, {"ids": ["p", "q"], "least": 0}) == [("p", 7)]
                assert await BY_IDS.rows(conn, {"ids": ["p"], "least": 2}) == []
                # A savepoint rolled back takes the raw statement's write along.
                with pytest.raises(RuntimeError):
                    async with conn.begin_nested():
                        await INSERT.rows(conn, {"thing_id": "s", "name": "pg", "hits": 2})
                        raise RuntimeError("roll back to the savepoint")
                assert await BY_NAME.rows(conn, {"name": "pg"}) == [("p", 1)]
            finally:
                sa.event.remove(sync.engine, "before_cursor_execute", executed)
            assert any("= ANY($2::VARCHAR[])" in sql or "= ANY($" in sql for sql in seen), seen
            assert not any("POSTCOMPILE" in sql for sql in seen)
        # Committed with SQLAlchemy's transaction.
        async with db.connect() as conn:
            assert await BY_NAME.rows(conn, {"name": "pg"}) == [("p", 1)]
        # A failed statement leaves the transaction to roll back, as SQLAlchemy's would.
        with pytest.raises(sa.exc.IntegrityError):
            async with db.transaction() as conn:
                await INSERT.rows(conn, {"thing_id": "late", "name": "pg", "hits": 5})
                await INSERT.rows(conn, {"thing_id": "p", "name": "pg", "hits": 5})
        async with db.connect() as conn:
            assert await BY_NAME.rows(conn, {"name": "pg"}) == [("p", 1)]
    finally:
        await db.close()
