"""Schema migrations in a child process (homeserver/migrate.py): the server
opens databases the child brought to head without loading Alembic, a failed
migration fails the start, and a schema that is not what the child reported
takes open_database's usual path."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import common.storage as storage
from homeserver.migrate import MigrationFailed, migrate_in_child_process

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _no_notes_left() -> Iterator[None]:
    yield
    storage.forget_schemas_at_head()


def _url(tmp_path: Path, component: str) -> str:
    return f"sqlite:///{tmp_path / f'{component}.db'}"


def test_child_migrates_and_the_server_opens_without_alembic(tmp_path: Path) -> None:
    urls = {c: _url(tmp_path, c) for c in ("userapi", "mediaapi")}
    code = (
        "import asyncio, json, sys\n"
        "from homeserver.migrate import migrate_in_child_process\n"
        "from common.storage import open_database\n"
        f"urls = json.loads({json.dumps(json.dumps(urls))})\n"
        "revisions = migrate_in_child_process(urls)\n"
        "async def main():\n"
        "    for component, url in urls.items():\n"
        "        db = await open_database(url, component)\n"
        "        async with db.connect() as conn:\n"
        "            await conn.exec_driver_sql('SELECT 1')\n"
        "        await db.close()\n"
        "asyncio.run(main())\n"
        "print(json.dumps({'revisions': revisions,\n"
        "                  'alembic': sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako'))}))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "gen")]))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["alembic"] == []
    for component in urls:
        assert answer["revisions"][component], component
        with sqlite3.connect(tmp_path / f"{component}.db") as conn:
            stored = {row[0] for row in conn.execute(f"SELECT version_num FROM alembic_version_{component}")}
        assert stored == set(answer["revisions"][component])


def test_a_failed_migration_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "userapi.db"
    with sqlite3.connect(path) as conn:  # migrated by a newer Myelin
        conn.execute("CREATE TABLE alembic_version_userapi (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version_userapi VALUES ('f00dcafe')")
    with pytest.raises(MigrationFailed, match="userapi"):
        migrate_in_child_process({"userapi": f"sqlite:///{path}"})
    assert not storage._SCHEMAS_AT_HEAD


def test_the_child_notes_what_it_left(tmp_path: Path) -> None:
    url = _url(tmp_path, "mediaapi")
    revisions = migrate_in_child_process({"mediaapi": url})
    assert storage._SCHEMAS_AT_HEAD[(storage._url_key(url), "mediaapi")] == frozenset(revisions["mediaapi"])


async def test_a_noted_schema_at_head_is_opened_without_migrating(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = _url(tmp_path, "mediaapi")
    db = await storage.open_database(url, "mediaapi")
    revisions = await storage.current_revisions(db.engine, "mediaapi")
    await db.close()
    storage.note_schema_at_head(url, "mediaapi", revisions)
    calls: list[str] = []

    async def upgrade(engine: object, component: str, migrations_root: object = None) -> None:
        calls.append(component)

    monkeypatch.setattr(storage, "upgrade_to_head", upgrade)
    db = await storage.open_database(url, "mediaapi")
    await db.close()
    assert calls == []


async def test_a_schema_that_is_not_the_noted_one_is_migrated_in_process(tmp_path: Path) -> None:
    url = _url(tmp_path, "mediaapi")
    # Noted, but the file is new (say, replaced after the child ran): migrated here.
    storage.note_schema_at_head(url, "mediaapi", ["mediaapi_0001"])
    db = await storage.open_database(url, "mediaapi")
    try:
        assert await storage.current_revisions(db.engine, "mediaapi")
        async with db.connect() as conn:
            tables = (await conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'table'"))).all()
        assert any(name.startswith("mediaapi_") for (name,) in tables)
    finally:
        await db.close()


async def test_a_noted_schema_that_moved_on_is_refused(tmp_path: Path) -> None:
    url = _url(tmp_path, "mediaapi")
    revisions = migrate_in_child_process({"mediaapi": url})
    with sqlite3.connect(tmp_path / "mediaapi.db") as conn:  # a newer Myelin migrated it since
        conn.execute("UPDATE alembic_version_mediaapi SET version_num = 'f00dcafe'")
    assert revisions["mediaapi"] != ["f00dcafe"]
    with pytest.raises(storage.SchemaTooNewError):
        await storage.open_database(url, "mediaapi")


def test_the_command_refuses_to_start_when_a_migration_fails(tmp_path: Path) -> None:
    from common.config import Config
    from homeserver.cli import _migrate_in_child_process

    config = Config(server_name="example.org", data_dir=tmp_path, signing_key_path=tmp_path / "signing.key")
    with sqlite3.connect(tmp_path / "userapi.db") as conn:  # migrated by a newer Myelin
        conn.execute("CREATE TABLE alembic_version_userapi (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version_userapi VALUES ('f00dcafe')")
    with pytest.raises(SystemExit, match="userapi"):
        _migrate_in_child_process(config, ["mediaapi", "userapi"])
    assert not storage._SCHEMAS_AT_HEAD
