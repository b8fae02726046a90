"""The fused aiosqlite connection (common/sqlite_connection.py): one trip to
the connection's thread per statement, and the same answers as aiosqlite's
own cursor for everything SQLAlchemy asks of a cursor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from common.sqlite_connection import FusedConnection
from common.storage import create_engine_for


@pytest.mark.parametrize("fused", [True, False])
async def test_statements_answer_the_same_fused_or_not(tmp_path: Path, fused: bool) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'x.db'}", fused_statements=fused)
    try:
        async with engine.begin() as conn:
            raw = await conn.get_raw_connection()
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
    finally:
        await engine.dispose()


async def test_a_statement_is_one_trip_to_the_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trips: list[str] = []
    original: Any = FusedConnection._execute

    async def counting(self: FusedConnection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(FusedConnection, "_execute", counting)
    engine = create_engine_for(f"sqlite:///{tmp_path / 'x.db'}", fused_statements=True)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            trips.clear()
            rows = (await conn.execute(text("SELECT :a, :b"), {"a": 1, "b": "two"})).all()
            assert [tuple(r) for r in rows] == [(1, "two")]
            assert trips == ["_execute_and_fetch"]
    finally:
        await engine.dispose()
