"""The hottest statements of the message path, run without SQLAlchemy's
per-statement machinery on the inline SQLite driver.

Running a prebuilt Core statement through ``AsyncConnection.execute`` costs
~25-30 us of Python (a greenlet switch, the compiled-cache key, parameter
processing, the result object) around a statement that SQLite runs in 2-5 us
(measured: an INSERT ... RETURNING of a small row 32 us against 4 us).
``PrebuiltStatement`` compiles its statement once for SQLite and, on a
connection of the inline driver (``common.sqlite_connection``: sqlite3 on
the loop's thread), hands the SQL and the parameters in their order to that
driver's own cursor, which keeps its checks (a write outside a write
transaction is refused, a BEGIN waits for the write lock). Every other
connection (PostgreSQL, the thread driver) runs the statement through
SQLAlchemy as before, so both paths answer the same rows.

Only for statements whose values need no SQLAlchemy type processing: the
parameters are passed to sqlite3 as they are (str, int, bool, bytes, None)
and the rows come back as sqlite3 gives them (booleans as 0/1). Errors are
raised as SQLAlchemy raises them (``DBAPIError`` subclasses).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import Executable

from common.sqlite_connection import InlineConnection, InlineCursor


class PrebuiltStatement:
    """A Core statement with named parameters (``column_keys``: the columns
    an INSERT is given, in any order)."""

    __slots__ = ("_column_keys", "_defaults", "_expanded", "_expanding", "_names", "_sql", "statement")

    def __init__(self, statement: Executable, column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self._column_keys = list(column_keys) if column_keys is not None else None
        self._sql: str | None = None
        self._names: tuple[str, ...] = ()
        # Values of parameters the statement carries itself (``literal(0)``).
        self._defaults: dict[str, Any] = {}
        # Expanding parameters (``IN``, a list): the SQL per list lengths.
        self._expanding: frozenset[str] = frozenset()
        self._expanded: dict[tuple[int, ...], str] = {}

    def _compile(self, dialect: Dialect) -> None:
        compiled = self.statement.compile(dialect=dialect, column_keys=self._column_keys)  # type: ignore[attr-defined]
        if dialect.paramstyle != "qmark" or compiled.positiontup is None:
            raise ValueError(f"not a positional SQLite statement: {compiled.string}")
        self._names = tuple(compiled.positiontup)
        self._defaults = {k: v for k, v in compiled.params.items() if v is not None}
        self._expanding = frozenset(bind.key for bind in compiled.post_compile_params)
        self._sql = compiled.string

    def _compiled(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        """The SQL and the names of its parameters in order (used by
        subclasses, e.g. syncapi's notification rows insert)."""
        if self._sql is None:
            self._compile(dialect)
        assert self._sql is not None
        return self._sql, self._names

    def _sql_and_values(self, dialect: Dialect, params: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]] | None:
        """The SQL and its parameters in order; None for an empty list given
        to an expanding parameter (SQLAlchemy writes that its own way)."""
        if self._sql is None:
            self._compile(dialect)
        assert self._sql is not None
        defaults = self._defaults
        if not self._expanding:
            return self._sql, tuple(params[n] if n in params else defaults[n] for n in self._names)
        lengths = tuple(len(params[name]) for name in sorted(self._expanding))
        if 0 in lengths:
            return None
        sql = self._expanded.get(lengths)
        if sql is None:
            sql = self._sql
            for name, length in zip(sorted(self._expanding), lengths, strict=True):
                sql = sql.replace(f"__[POSTCOMPILE_{name}]", ", ".join("?" * length))
            if len(self._expanded) >= 64:
                self._expanded.clear()
            self._expanded[lengths] = sql
        values: list[Any] = []
        for name in self._names:
            if name in self._expanding:
                values.extend(params[name])
            else:
                values.append(params[name] if name in params else defaults[name])
        return sql, tuple(values)

    @staticmethod
    def runs_inline(conn: AsyncConnection) -> bool:
        """Whether statements on ``conn`` bypass SQLAlchemy (one statement
        per row then costs little more than a multi-row one)."""
        return PrebuiltStatement._inline_connection(conn) is not None

    @staticmethod
    def _inline_connection(conn: AsyncConnection) -> InlineConnection | None:
        sync = conn.sync_connection
        if sync is None or sync.closed or sync.dialect.name != "sqlite":
            return None
        dbapi = sync.connection.dbapi_connection
        return dbapi if isinstance(dbapi, InlineConnection) else None

    async def rows(self, conn: AsyncConnection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The statement's rows (none for a statement that returns none)."""
        inline = self._inline_connection(conn)
        prepared = self._sql_and_values(conn.dialect, params) if inline is not None else None
        if inline is None or prepared is None:
            result = await conn.execute(self.statement, dict(params))
            return [tuple(row) for row in result] if result.returns_rows else []
        sql, values = prepared
        cursor = InlineCursor(inline)
        _announce(conn, cursor, sql, values, executemany=False)
        try:
            cursor.execute(sql, values)
            return list(cursor.fetchall())
        except sqlite3.Error as error:
            raise _wrapped(sql, values, error, conn.dialect) from error
        finally:
            cursor.close()

    async def execute(self, conn: AsyncConnection, params: Mapping[str, Any]) -> None:
        """The statement, for its effect."""
        await self.rows(conn, params)

    async def scalar(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        found = await self.rows(conn, params)
        return found[0][0] if found else None

    async def execute_many(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
        """The statement (returning no rows) once per parameter set."""
        if not rows:
            return
        inline = self._inline_connection(conn)
        if inline is None:
            await conn.execute(self.statement, [dict(row) for row in rows])
            return
        if self._sql is None:
            self._compile(conn.dialect)
        assert self._sql is not None
        if self._expanding:
            raise ValueError("execute_many of a statement with an expanding parameter")
        sql, names, defaults = self._sql, self._names, self._defaults
        values = [tuple(row[n] if n in row else defaults[n] for n in names) for row in rows]
        cursor = InlineCursor(inline)
        _announce(conn, cursor, sql, values, executemany=True)
        try:
            cursor.executemany(sql, values)
        except sqlite3.Error as error:
            raise _wrapped(sql, values, error, conn.dialect) from error
        finally:
            cursor.close()


def _announce(conn: AsyncConnection, cursor: InlineCursor, sql: str, values: Any, *, executemany: bool) -> None:
    """Tells SQLAlchemy's ``before_cursor_execute`` listeners, if any (tests
    counting statements), of the statement, as SQLAlchemy would (without an
    execution context)."""
    sync = conn.sync_connection
    if sync is not None and (sync._has_events or sync.engine._has_events):
        sync.dispatch.before_cursor_execute(sync, cursor, sql, values, None, executemany)


def _wrapped(sql: str, values: Any, error: sqlite3.Error, dialect: Dialect) -> Exception:
    """The error as SQLAlchemy raises it for the same statement (IntegrityError,
    OperationalError, ...: subclasses of DBAPIError, which callers catch)."""
    return DBAPIError.instance(sql, values, error, sqlite3.Error, dialect=dialect)
