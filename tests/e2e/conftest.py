"""Fixtures that run Myelin for real: the single process, and the split
deployment on PostgreSQL and Tansu."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import RunningHomeserver, start_monolith, start_split
from tests.harness.tansu import start_tansu


def _postgres_base(postgres_url: str, name: str) -> str:
    # Each deployment gets its own databases: <name>_<component>.
    return postgres_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def monolith(tmp_path: Path) -> Iterator[RunningHomeserver]:
    hs = start_monolith(tmp_path / "monolith")
    yield hs
    hs.stop()


@pytest.fixture
def split(tmp_path: Path, postgres_url: str) -> Iterator[RunningHomeserver]:
    # A broker per deployment, so topics and consumer groups start empty.
    broker, bootstrap = start_tansu()
    hs = start_split(tmp_path / "split",
                     postgres_url=_postgres_base(postgres_url, f"myelin_{uuid.uuid4().hex[:8]}"),
                     kafka_bootstrap=bootstrap)
    yield hs
    hs.stop()
    broker.kill()
    broker.wait()


@pytest.fixture(params=["monolith", pytest.param("split", marks=[pytest.mark.postgres, pytest.mark.kafka])])
def homeserver(request: pytest.FixtureRequest) -> RunningHomeserver:
    hs: RunningHomeserver = request.getfixturevalue(request.param)
    return hs
