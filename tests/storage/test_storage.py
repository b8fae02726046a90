"""common/storage.py against SQLite and a real PostgreSQL, with the fixture histories in
tests/storage/migrations_fixture/ (components ``storagetest`` and ``othertest``)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from common import storage
from common.storage import (
    Database,
    SchemaError,
    SchemaTooNewError,
    current_revisions,
    database_url_for,
    ensure_postgres_database,
    open_database,
    upsert_statement,
)
from tests.harness.postgres import PostgresServer
from tests.storage.fixture_schema import FIXTURE, items, tags, things

ROOT = Path(__file__).resolve().parents[2]


async def table_names(database: Database) -> set[str]:
    async with database.connect() as conn:
        return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))


def history_up_to(tmp_path: Path, component: str, last_revision: str) -> Path:
    """A copy of the fixture migrations in which ``component``'s history stops at a revision."""
    root = tmp_path / "migrations_copy"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("__pycache__"))
    versions = root / component / "versions"
    for path in sorted(versions.glob("*.py")):
        if path.name.split("_", 1)[0] > last_revision:
            path.unlink()
    return root


async def test_migrates_to_head_with_its_own_version_table(db: Database) -> None:
    assert await current_revisions(db.engine, "storagetest") == ("0002",)
    names = await table_names(db)
    assert {"storagetest_things", "storagetest_tags", "alembic_version_storagetest"} <= names
    assert "alembic_version" not in names
    async with db.transaction() as conn:
        await conn.execute(sa.insert(things).values(thing_id="a", name="first"))
        await conn.execute(sa.insert(tags).values(thing_id="a", tag="t", weight=1))
    async with db.connect() as conn:
        assert (await conn.execute(sa.select(things.c.hits))).scalar_one() == 0


async def test_reopening_runs_no_migration_and_keeps_data(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = await open_database(database_url, "storagetest", migrations_root=FIXTURE)
    async with first.transaction() as conn:
        await conn.execute(sa.insert(things).values(thing_id="kept", name="x"))
    await first.close()

    caplog.set_level(logging.INFO, logger="alembic")
    again = await open_database(database_url, "storagetest", migrations_root=FIXTURE)
    try:
        assert not [r for r in caplog.records if "Running upgrade" in r.getMessage()]
        assert await current_revisions(again.engine, "storagetest") == ("0002",)
        async with again.connect() as conn:
            assert (await conn.execute(sa.select(things.c.thing_id))).scalars().all() == ["kept"]
    finally:
        await again.close()


async def test_upgrades_an_older_schema_step_by_step(database_url: str, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    old_code = history_up_to(tmp_path, "storagetest", "0001")
    old = await open_database(database_url, "storagetest", migrations_root=old_code)
    assert await current_revisions(old.engine, "storagetest") == ("0001",)
    assert "storagetest_tags" not in await table_names(old)
    await old.close()

    caplog.set_level(logging.INFO, logger="alembic")
    new = await open_database(database_url, "storagetest", migrations_root=FIXTURE)
    try:
        assert [r.getMessage() for r in caplog.records if "Running upgrade" in r.getMessage()] == [
            "Running upgrade 0001 -> 0002, create storagetest_tags, keyed by (thing_id, tag)"
        ]
        assert await current_revisions(new.engine, "storagetest") == ("0002",)
        assert "storagetest_tags" in await table_names(new)
    finally:
        await new.close()


async def test_a_failing_migration_leaves_the_database_untouched(database_url: str, tmp_path: Path) -> None:
    root = history_up_to(tmp_path, "storagetest", "0002")
    second = next((root / "storagetest" / "versions").glob("0002_*.py"))
    second.write_text(second.read_text().replace(
        "def upgrade() -> None:\n",
        "def upgrade() -> None:\n    op.execute(\"CREATE TABLE storagetest_half_done (x INTEGER)\")\n"
        "    op.execute(\"THIS IS NOT SQL\")\n",
    ))
    with pytest.raises(sa.exc.DBAPIError):
        await open_database(database_url, "storagetest", migrations_root=root)
    # Both revisions ran in one transaction, DDL included: nothing of either is left.
    probe = await open_database(database_url, "othertest", migrations_root=FIXTURE)
    try:
        names = await table_names(probe)
        assert not {n for n in names if n.startswith(("storagetest", "alembic_version_storagetest"))}
    finally:
        await probe.close()


async def test_refuses_a_schema_migrated_by_newer_code(database_url: str, tmp_path: Path) -> None:
    newer = await open_database(database_url, "storagetest", migrations_root=FIXTURE)
    await newer.close()
    older_code = history_up_to(tmp_path, "storagetest", "0001")
    with pytest.raises(SchemaTooNewError) as raised:
        await open_database(database_url, "storagetest", migrations_root=older_code)
    assert raised.value.revisions == ("0002",)
    assert raised.value.known_heads == ("0001",)


async def test_refuses_an_unknown_stamped_revision(db: Database, database_url: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(sa.text("UPDATE alembic_version_storagetest SET version_num = 'f00dcafe'"))
    with pytest.raises(SchemaTooNewError, match="f00dcafe"):
        await open_database(database_url, "storagetest", migrations_root=FIXTURE)
    # Nothing was touched: the stamp is still there.
    assert await current_revisions(db.engine, "storagetest") == ("f00dcafe",)


async def test_two_components_share_one_database(database_url: str) -> None:
    # Both histories start at a revision named "0001": only separate version tables keep
    # them apart.
    storagetest = await open_database(database_url, "storagetest", migrations_root=FIXTURE)
    othertest = await open_database(database_url, "othertest", migrations_root=FIXTURE)
    try:
        assert await current_revisions(othertest.engine, "othertest") == ("0001",)
        assert await current_revisions(storagetest.engine, "storagetest") == ("0002",)
        names = await table_names(othertest)
        assert {"alembic_version_storagetest", "alembic_version_othertest",
                "storagetest_things", "othertest_items"} <= names
        async with othertest.transaction() as conn:
            await conn.execute(sa.insert(items).values(item_id=1, body="b"))
    finally:
        await storagetest.close()
        await othertest.close()
    # Reopening either in the shared database is still a no-op.
    for component, head in (("othertest", "0001"), ("storagetest", "0002")):
        reopened = await open_database(database_url, component, migrations_root=FIXTURE)
        assert await current_revisions(reopened.engine, component) == (head,)
        await reopened.close()


async def test_env_py_with_the_wrong_component_name_is_refused(database_url: str, tmp_path: Path) -> None:
    root = history_up_to(tmp_path, "othertest", "9999")
    env = root / "othertest" / "env.py"
    env.write_text(env.read_text().replace('run_alembic_env("othertest")', 'run_alembic_env("storagetest")'))
    with pytest.raises(SchemaError, match="storagetest"):
        await open_database(database_url, "othertest", migrations_root=root)


async def test_upsert_inserts_then_updates(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(db.upsert(things, {"thing_id": "a", "name": "one"}, ["thing_id"]))
        await conn.execute(db.upsert(things, {"thing_id": "a", "name": "two"}, ["thing_id"]))
        await conn.execute(db.upsert(things, [{"thing_id": "b", "name": "b1"},
                                              {"thing_id": "c", "name": "c1"}], ["thing_id"]))
    async with db.connect() as conn:
        rows = (await conn.execute(sa.select(things.c.thing_id, things.c.name).order_by("thing_id"))).all()
    assert [tuple(r) for r in rows] == [("a", "two"), ("b", "b1"), ("c", "c1")]


async def test_upsert_set_forms(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(db.upsert(things, {"thing_id": "a", "name": "n", "hits": 5}, ["thing_id"]))
        # Only the listed columns are taken from the proposed row.
        await conn.execute(db.upsert(things, {"thing_id": "a", "name": "ignored", "hits": 7},
                                     ["thing_id"], set_=["hits"]))
        # An expression over the existing and the proposed row, returning the result.
        hits = (await conn.execute(
            db.upsert(things, {"thing_id": "a", "name": "n", "hits": 3}, ["thing_id"],
                      set_=lambda excluded: {"hits": things.c.hits + excluded.hits})
            .returning(things.c.hits)
        )).scalar_one()
        assert hits == 10
        # A constant mapping, and a conditional update that does not apply.
        await conn.execute(db.upsert(things, {"thing_id": "a", "name": "n"}, ["thing_id"],
                                     set_={"name": "renamed"}))
        await conn.execute(db.upsert(things, {"thing_id": "a", "name": "never"}, ["thing_id"],
                                     where=things.c.hits > 100))
        # Nothing to set: DO NOTHING.
        await conn.execute(db.upsert(things, {"thing_id": "a", "name": "x", "hits": 0}, ["thing_id"],
                                     set_=[]))
        await conn.execute(db.insert_or_ignore(things, {"thing_id": "a", "name": "y"}))
    async with db.connect() as conn:
        row = (await conn.execute(sa.select(things.c.name, things.c.hits))).one()
    assert tuple(row) == ("renamed", 10)


async def test_upsert_on_a_composite_unique_key(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(sa.insert(things).values(thing_id="a", name="a"))
        for weight in (1, 2, 3):
            await conn.execute(db.upsert(tags, {"thing_id": "a", "tag": "t", "weight": weight},
                                         ["thing_id", "tag"]))
        await conn.execute(db.upsert(tags, {"thing_id": "a", "tag": "u", "weight": 9}, ["thing_id", "tag"]))
    async with db.connect() as conn:
        rows = (await conn.execute(sa.select(tags.c.tag, tags.c.weight).order_by(tags.c.tag))).all()
    assert [tuple(r) for r in rows] == [("t", 3), ("u", 9)]


def test_upsert_statement_rejects_other_dialects() -> None:
    with pytest.raises(ValueError, match="mysql"):
        upsert_statement("mysql", things, {"thing_id": "a"}, ["thing_id"])


async def test_transaction_rolls_back_on_error_and_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute(sa.insert(things).values(thing_id="gone", name="x"))
            raise RuntimeError("abort")
    with pytest.raises(IntegrityError):
        async with db.transaction() as conn:
            await conn.execute(sa.insert(tags).values(thing_id="no-such-thing", tag="t", weight=1))
    async with db.connect() as conn:
        if db.dialect_name == "sqlite" and storage.SQLITE_DRIVER == "inline":
            # A write that did not queue for SQLite's write lock is refused at once.
            with pytest.raises(OperationalError, match="outside a write transaction"):
                await conn.execute(sa.insert(things).values(thing_id="read-side", name="x"))
        else:
            await conn.execute(sa.insert(things).values(thing_id="read-side", name="x"))
    # connect() is for reads: what it wrote is rolled back.
    async with db.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(things))).scalar_one() == 0


async def test_sqlite_settings_and_serialised_writers(tmp_path: Path) -> None:
    url = database_url_for("storagetest", postgres_url=None, data_dir=tmp_path / "data")
    db = await open_database(url, "storagetest", migrations_root=FIXTURE)
    try:
        assert (tmp_path / "data" / "storagetest.db").is_file()
        async with db.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 1  # NORMAL
            # A small page cache per connection, and few connections kept open (memory).
            assert (await conn.exec_driver_sql("PRAGMA cache_size")).scalar() == -storage.SQLITE_CACHE_KIB
        assert db.engine.pool.size() == storage.SQLITE_POOL_SIZE  # type: ignore[attr-defined]
        async with db.transaction() as conn:
            await conn.execute(sa.insert(things).values(thing_id="n", name="counter"))

        async def read_then_write() -> None:
            # A read followed by a write: without BEGIN IMMEDIATE, concurrent ones would fail
            # with "database is locked" or lose updates.
            async with db.transaction() as conn:
                hits = (await conn.execute(sa.select(things.c.hits))).scalar_one()
                await asyncio.sleep(0)
                await conn.execute(sa.update(things).values(hits=hits + 1))

        await asyncio.gather(*(read_then_write() for _ in range(12)))
        async with db.connect() as conn:
            assert (await conn.execute(sa.select(things.c.hits))).scalar_one() == 12
    finally:
        await db.close()


async def test_sqlite_queued_writers_do_not_starve_readers(tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'q.db'}", "storagetest", migrations_root=FIXTURE)
    try:
        release = asyncio.Event()
        holding = asyncio.Event()

        async def slow_writer() -> None:
            async with db.transaction() as conn:
                await conn.execute(sa.insert(things).values(thing_id="slow", name="s"))
                holding.set()
                await release.wait()

        async def writer(i: int) -> None:
            async with db.transaction() as conn:
                await conn.execute(sa.insert(things).values(thing_id=f"w{i}", name="w"))

        first = asyncio.create_task(slow_writer())
        await holding.wait()
        # More queued writers than the pool has connections: they must not hold connections
        # while they wait, or this read could not get one.
        queued = [asyncio.create_task(writer(i)) for i in range(30)]
        await asyncio.sleep(0.05)
        async with asyncio.timeout(5), db.connect() as conn:
            assert (await conn.execute(sa.select(sa.func.count()).select_from(things))).scalar_one() == 0
        release.set()
        await asyncio.gather(first, *queued)
        async with db.connect() as conn:
            assert (await conn.execute(sa.select(sa.func.count()).select_from(things))).scalar_one() == 31
    finally:
        await db.close()


async def test_sqlite_nested_write_transaction_fails_fast(tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'n.db'}", "storagetest", migrations_root=FIXTURE)
    try:
        async with db.transaction() as conn:
            await conn.execute(sa.insert(things).values(thing_id="outer", name="o"))
            with pytest.raises(RuntimeError, match="nested"):
                async with db.transaction():
                    pass
        # The lock was released: the next transaction goes through.
        async with db.transaction() as conn:
            await conn.execute(sa.insert(things).values(thing_id="after", name="a"))
    finally:
        await db.close()


async def test_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="memory"):
        await open_database("sqlite+aiosqlite:///:memory:", "storagetest", migrations_root=FIXTURE)


def test_database_url_for() -> None:
    data = Path("/var/lib/myelin")
    assert database_url_for("syncapi", postgres_url=None, data_dir=data) == (
        "sqlite+aiosqlite:////var/lib/myelin/syncapi.db"
    )
    assert database_url_for("roomserver", postgres_url="postgresql://me:pw@db:5433/myelin", data_dir=data) == (
        "postgresql+asyncpg://me:pw@db:5433/myelin_roomserver"
    )
    assert database_url_for("userapi", postgres_url="postgres://db/prod", data_dir=data) == (
        "postgresql+asyncpg://db/prod_userapi"
    )
    assert database_url_for("userapi", postgres_url="postgresql://db", data_dir=data) == (
        "postgresql+asyncpg://db/myelin_userapi"
    )
    assert database_url_for("userapi", postgres_url="postgresql://db/shared", data_dir=data,
                            separate_databases=False) == "postgresql+asyncpg://db/shared"
    with pytest.raises(ValueError):
        database_url_for("Room Server", postgres_url=None, data_dir=data)


@pytest.mark.postgres
async def test_postgres_database_per_component_is_created(postgres_server: PostgresServer) -> None:
    base = postgres_server.database_url("myelin_percomponent")
    url = database_url_for("storagetest", postgres_url=base, data_dir=Path("/nonexistent"))
    assert url.endswith("/myelin_percomponent_storagetest")
    db = await open_database(url, "storagetest", migrations_root=FIXTURE)
    try:
        assert await current_revisions(db.engine, "storagetest") == ("0002",)
        assert await ensure_postgres_database(url) is False  # exists now
    finally:
        await db.close()
        postgres_server.drop_database("myelin_percomponent_storagetest")


@pytest.mark.postgres
async def test_postgres_concurrent_openers_migrate_once(fresh_postgres_database: str) -> None:
    opened = await asyncio.gather(*(
        open_database(fresh_postgres_database, "storagetest", migrations_root=FIXTURE) for _ in range(4)
    ))
    try:
        for db in opened:
            assert await current_revisions(db.engine, "storagetest") == ("0002",)
    finally:
        for db in opened:
            await db.close()


def test_alembic_command_line_uses_the_shared_environment(tmp_path: Path) -> None:
    ini = tmp_path / "alembic.ini"
    ini.write_text(
        "[storagetest]\n"
        f"script_location = {FIXTURE / 'storagetest'}\n"
        f"prepend_sys_path = {ROOT}\n"
        "path_separator = os\n"
    )
    db_path = tmp_path / "cli.db"

    def alembic(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(ini), "--name", "storagetest",
             "-x", f"url=sqlite:///{db_path}", *args],
            check=True, capture_output=True, text=True, cwd=tmp_path, timeout=120,
        )
        return done.stdout + done.stderr

    alembic("upgrade", "0001")
    assert "0001" in alembic("current")
    alembic("upgrade", "head")
    assert "0002 (head)" in alembic("current")
    alembic("downgrade", "base")

    async def check() -> None:
        db = await open_database(f"sqlite:///{db_path}", "storagetest", migrations_root=FIXTURE)
        try:
            assert await current_revisions(db.engine, "storagetest") == ("0002",)
        finally:
            await db.close()

    asyncio.run(check())
