"""common.storage.Database on SQLite: write transactions, which queue one
after another, run on one connection kept between them; one that failed in
an unknown state (cancelled, lost) is closed and replaced."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from common.storage import Database, open_database
from tests.storage.fixture_schema import FIXTURE, things


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The writer connection is the SQLite drivers': ``db`` (conftest.py) on SQLite only."""
    return f"sqlite:///{tmp_path / 'w.db'}"


async def _names(db: Database) -> list[str]:
    async with db.connect() as conn:
        return list((await conn.execute(sa.select(things.c.name).order_by(things.c.name))).scalars())


async def test_write_transactions_share_one_connection(db: Database) -> None:
    seen = []
    for name in ("a", "b", "c"):
        async with db.transaction() as conn:
            await conn.execute(things.insert().values(thing_id=name, name=name))
            seen.append(conn)
    assert seen[0] is seen[1] is seen[2]
    assert await _names(db) == ["a", "b", "c"]


async def test_an_error_rolls_back_and_keeps_the_connection(db: Database) -> None:
    async with db.transaction() as conn:
        first = conn
    with pytest.raises(sa.exc.IntegrityError):
        async with db.transaction() as conn:
            await conn.execute(things.insert().values(thing_id="x", name="x"))
            await conn.execute(things.insert().values(thing_id="x", name="again"))
    async with db.transaction() as conn:
        assert conn is first
        await conn.execute(things.insert().values(thing_id="y", name="y"))
    assert await _names(db) == ["y"]


async def test_a_cancelled_transaction_leaves_a_new_connection_for_the_next(db: Database) -> None:
    async with db.transaction() as conn:
        first = conn
    entered = asyncio.Event()

    async def stuck() -> None:
        async with db.transaction() as conn:
            await conn.execute(things.insert().values(thing_id="lost", name="lost"))
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(stuck())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert first.closed
    async with db.transaction() as conn:
        assert conn is not first
        await conn.execute(things.insert().values(thing_id="kept", name="kept"))
    assert await _names(db) == ["kept"]


async def test_close_closes_the_writer_connection(tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'c.db'}", "storagetest", migrations_root=FIXTURE)
    async with db.transaction() as conn:
        await conn.execute(things.insert().values(thing_id="a", name="a"))
    await db.close()
    assert conn.closed
