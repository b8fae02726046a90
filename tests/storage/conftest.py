"""Every storage test runs with both SQLite drivers (common/sqlite_connection.py):
``inline`` (sqlite3 on the loop's thread) and ``thread`` (aiosqlite), except
tests named ``test_inline_*`` (about the inline driver alone) and PostgreSQL
tests, which run once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from common import storage
from common.storage import Database, open_database
from tests.storage.fixture_schema import FIXTURE


@pytest.fixture(autouse=True, params=storage.SQLITE_DRIVERS)
def sqlite_driver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    driver: str = request.param
    monkeypatch.setattr(storage, "SQLITE_DRIVER", driver)
    # For the alembic command line the tests start as a subprocess.
    monkeypatch.setenv("MYELIN_SQLITE_DRIVER", driver)
    return driver


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A database with the fixture migrations' tables (fixture_schema.py), on each
    database of ``database_url``."""
    database = await open_database(database_url, "storagetest", migrations_root=FIXTURE)
    try:
        yield database
    finally:
        await database.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The SQLite driver means nothing to a PostgreSQL test: run those once.
    deselected = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        on_postgres = params.get("database_url") == "postgres" or item.get_closest_marker("postgres")
        inline_only = getattr(item, "originalname", item.name).startswith("test_inline_")
        # Only this folder's tests have the driver parameter: the hook sees the whole suite's.
        if (on_postgres or inline_only) and params.get("sqlite_driver", "inline") != "inline":
            deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]
