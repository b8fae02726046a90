"""An aiosqlite connection that runs each SQL statement in one trip to its
thread instead of four.

SQLAlchemy's aiosqlite adapter makes, for every statement, separate calls to
the connection's thread to create a cursor, execute, fetch the rows and close
the cursor; each trip is a queue put, a wake-up of the thread, a
``call_soon_threadsafe`` back and a GIL hand-off both ways. On the send path
(about twenty statements per message) those trips were a large share of the
server's CPU. Here the cursor is created and the rows fetched in the same
trip as the execute, and closing is left to the garbage collector (a
finished sqlite3 statement holds no lock). Every sqlite3 call still runs on
the connection's own thread, so SQLite's work stays off the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager


class FusedCursor(aiosqlite.Cursor):
    """A cursor whose sqlite3 cursor is made on first use, on the thread;
    a statement's rows are fetched with it and served from memory."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.iter_chunk_size = conn._iter_chunk_size
        self._conn = conn
        self._cursor: sqlite3.Cursor | None = None  # type: ignore[assignment]
        # The rows of the last statement not yet fetched: ``_rows[_position:]``.
        self._rows: list[Any] | None = None
        self._position = 0

    async def _on_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the connection's thread (aiosqlite's own queue)."""
        return await self._conn._execute(fn, *args)  # type: ignore[no-untyped-call]

    def _cursor_now(self) -> sqlite3.Cursor:
        if self._cursor is None:
            self._cursor = self._conn._conn.cursor()
        return self._cursor

    def _execute_and_fetch(self, sql: str, parameters: Any) -> list[Any] | None:
        cursor = self._cursor_now()
        cursor.execute(sql, parameters)
        return cursor.fetchall() if cursor.description is not None else None

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> FusedCursor:
        self._rows, self._position = None, 0
        self._rows = await self._on_thread(self._execute_and_fetch, sql,
                                               [] if parameters is None else parameters)
        return self

    def _executemany(self, sql: str, parameters: Any) -> None:
        self._cursor_now().executemany(sql, parameters)

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> FusedCursor:
        self._rows, self._position = None, 0
        await self._on_thread(self._executemany, sql, parameters)
        return self

    def _take(self, count: int | None) -> list[Any]:
        rows, start = self._rows, self._position
        if rows is None:
            return []
        end = len(rows) if count is None else min(len(rows), start + count)
        self._position = end
        if end >= len(rows):
            self._rows, self._position = None, 0
        return rows[start:end]

    async def fetchone(self) -> Any:
        taken = self._take(1)
        return taken[0] if taken else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        return self._take(size if size is not None else self.arraysize)

    async def fetchall(self) -> Sequence[Any]:
        if self._position == 0 and self._rows is not None:
            rows, self._rows = self._rows, None
            return rows
        return self._take(None)

    def _executescript(self, sql_script: str) -> None:
        self._cursor_now().executescript(sql_script)

    async def executescript(self, sql_script: str) -> FusedCursor:
        self._rows, self._position = None, 0
        await self._on_thread(self._executescript, sql_script)
        return self

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize if self._cursor is not None else 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor_now().arraysize = value

    async def close(self) -> None:
        # Nothing to do on the thread: the statement finished when its rows
        # were fetched; the sqlite3 cursor goes with this object.
        self._rows, self._position = None, 0

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount if self._cursor is not None else -1

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid if self._cursor is not None else None

    @property
    def description(self) -> Any:
        return self._cursor.description if self._cursor is not None else None


class FusedConnection(aiosqlite.Connection):
    @contextmanager
    async def cursor(self) -> aiosqlite.Cursor:
        # No trip to the thread: the sqlite3 cursor is made by the first execute.
        return FusedCursor(self)


def fused_connect(database: str, **kwargs: Any) -> FusedConnection:
    """What ``aiosqlite.connect`` does, with a ``FusedConnection``."""
    connection = FusedConnection(partial(sqlite3.connect, database, **kwargs), iter_chunk_size=64)
    # As SQLAlchemy does for its own: a forgotten connection must not keep the process alive.
    connection._thread.daemon = True
    return connection
