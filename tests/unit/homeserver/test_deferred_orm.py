"""The `myelin` command keeps sqlalchemy.orm out of the server (homeserver/
memory.py defer_sqlalchemy_orm): the async engine works, the ORM names still
import on demand, and nothing the single process imports needs the ORM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _run_python(code: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "gen")])
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_the_single_process_runs_without_the_orm(tmp_path: Path) -> None:
    code = (
        "import asyncio, json, sys\n"
        "from homeserver.memory import configure_process_memory\n"
        "configure_process_memory()\n"
        "import homeserver.cli, homeserver.monolith, homeserver.migrate\n"
        "import roomserver.component, userapi.component, clientapi.component\n"
        "import syncapi.component, federationapi.component, mediaapi.component\n"
        "import clientapi.routing.directory\n"
        "from common.storage import open_database\n"
        "loaded_at_start = 'sqlalchemy.orm' in sys.modules\n"
        "async def main():\n"
        f"    db = await open_database('sqlite:///{tmp_path / 'mediaapi.db'}', 'mediaapi')\n"
        "    async with db.transaction() as conn:\n"
        "        await conn.exec_driver_sql('CREATE TABLE t (x INTEGER)')\n"
        "        await conn.exec_driver_sql('INSERT INTO t VALUES (7)')\n"
        "    async with db.connect() as conn:\n"
        "        value = (await conn.exec_driver_sql('SELECT x FROM t')).scalar()\n"
        "    await db.close()\n"
        "    return value\n"
        "value = asyncio.run(main())\n"
        "loaded_after_use = 'sqlalchemy.orm' in sys.modules\n"
        "from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker\n"
        "print(json.dumps([loaded_at_start, loaded_after_use, value, AsyncSession.__name__,\n"
        "                  'sqlalchemy.orm' in sys.modules, async_sessionmaker.__module__]))\n"
    )
    assert json.loads(_run_python(code)) == [
        False, False, 7, "AsyncSession", True, "sqlalchemy.ext.asyncio.session"]


def test_nothing_changes_when_the_package_is_loaded_already() -> None:
    code = (
        "import sqlalchemy.ext.asyncio, sys\n"
        "from homeserver.memory import defer_sqlalchemy_orm\n"
        "before = sys.modules['sqlalchemy.ext.asyncio']\n"
        "print(defer_sqlalchemy_orm(), sys.modules['sqlalchemy.ext.asyncio'] is before)\n"
    )
    assert _run_python(code) == "False True"


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    code = (
        "from homeserver.memory import defer_sqlalchemy_orm\n"
        "assert defer_sqlalchemy_orm()\n"
        "import sqlalchemy.ext.asyncio as package\n"
        "try:\n"
        "    package.NoSuchThing\n"
        "except AttributeError as e:\n"
        "    print('AttributeError', 'NoSuchThing' in str(e))\n"
    )
    assert _run_python(code) == "AttributeError True"
