"""Suite-wide pytest configuration: the harness plugins every test may use, and
``database_url``, the fixture that runs a test once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.harness.postgres",
    "tests.harness.tansu",
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database: a SQLite file in the test's directory, then a fresh
    database on the test session's PostgreSQL cluster (its run is marked ``postgres``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url: str = request.getfixturevalue("fresh_postgres_database")
    return url
