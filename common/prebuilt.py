"""The hottest statements of the message path, run without SQLAlchemy's
per-statement machinery on the inline SQLite driver and on asyncpg.

Running a prebuilt Core statement through ``AsyncConnection.execute`` costs
~25-30 us of Python (a greenlet switch, the compiled-cache key, parameter
processing, the result object) around a statement that SQLite runs in 2-5 us
(measured: an INSERT ... RETURNING of a small row 32 us against 4 us).
``PrebuiltStatement`` compiles its statement once for SQLite and, on a
connection of the inline driver (``common.sqlite_connection``: sqlite3 on
the loop's thread), hands the SQL and the parameters in their order to that
driver's own cursor, which keeps its checks (a write outside a write
transaction is refused, a BEGIN waits for the write lock).

On PostgreSQL (asyncpg) the same holds for the asyncpg connection under
SQLAlchemy's: a statement through ``AsyncConnection.execute`` cost ~150 us
of CPU against ~30 us run by asyncpg itself (a SELECT by a list of IDs,
measured). The statement is compiled once for PostgreSQL; an expanding
parameter (``IN`` a list) becomes ``= ANY($n::TYPE[])`` (``NOT IN``:
``<> ALL``), so every list length shares one server-side prepared statement.
It runs in the transaction SQLAlchemy's connection is in (begun on the
asyncpg connection first if SQLAlchemy has not yet, as SQLAlchemy's adapter
would), under the adapter's lock. The thread SQLite driver runs the statement
through SQLAlchemy as before, so every path answers the same rows.

Only for statements whose values need no SQLAlchemy type processing: the
parameters are passed to the driver as they are (str, int, bool, bytes,
None; asyncpg wants a real bool for a BOOLEAN) and the rows come back as the
driver gives them (booleans as 0/1 on SQLite). Errors are raised as
SQLAlchemy raises them (``DBAPIError`` subclasses).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import Executable

from common.sqlite_connection import InlineConnection, InlineCursor


class PrebuiltStatement:
    """A Core statement with named parameters (``column_keys``: the columns
    an INSERT is given, in any order)."""

    __slots__ = ("_column_keys", "_defaults", "_expanded", "_expanding", "_names", "_pg", "_sql", "statement")

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
        # PostgreSQL: the SQL, per positional parameter its name, the
        # expanding ones (arrays there), and the statement's own values.
        self._pg: tuple[str, tuple[str, ...], frozenset[str], dict[str, Any]] | None = None

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

    def _compile_postgres(self, dialect: Dialect) -> tuple[str, tuple[str, ...], frozenset[str], dict[str, Any]]:
        """The PostgreSQL SQL ($n parameters) and the parameter names in
        the order of their numbers. Expanding parameters become arrays."""
        compiled = self.statement.compile(dialect=dialect, column_keys=self._column_keys)  # type: ignore[attr-defined]
        if compiled.positiontup is None:
            raise ValueError(f"not a positional PostgreSQL statement: {compiled.string}")
        expanding = {bind.key: bind for bind in compiled.post_compile_params}
        # SQLAlchemy numbers the plain parameters $1..$m in order and leaves
        # the expanding ones to its post-compilation: they come after.
        names = [name for name in compiled.positiontup if name not in expanding]
        sql: str = compiled.string
        for name, bind in expanding.items():
            names.append(name)
            element_type = dialect.type_compiler_instance.process(bind.type)
            array = f"${len(names)}::{element_type}[]"
            marker = f"(__[POSTCOMPILE_{name}])"
            sql = sql.replace(f" NOT IN {marker}", f" <> ALL({array})").replace(f" IN {marker}", f" = ANY({array})")
            if marker in sql:
                raise ValueError(f"expanding parameter {name} used other than in IN: {compiled.string}")
        defaults = {k: v for k, v in compiled.params.items() if v is not None}
        self._pg = (sql, tuple(names), frozenset(expanding), defaults)
        return self._pg

    @staticmethod
    def _asyncpg_connection(conn: AsyncConnection) -> Any | None:
        """SQLAlchemy's asyncpg adapter under ``conn``, or None. Its
        ``_connection``, ``_transaction``, ``_start_transaction``,
        ``_execute_mutex`` and ``_handle_exception`` are SQLAlchemy's
        internals: SQLAlchemy is pinned (pyproject.toml), and
        tests/storage/test_prebuilt.py runs every path on PostgreSQL."""
        sync = conn.sync_connection
        if sync is None or sync.closed or sync.dialect.driver != "asyncpg":
            return None
        return sync.connection.dbapi_connection

    async def _rows_asyncpg(self, conn: AsyncConnection, adapter: Any, params: Mapping[str, Any]
                            ) -> list[tuple[Any, ...]]:
        sql, names, _, defaults = self._pg or self._compile_postgres(conn.dialect)
        values = tuple(params[n] if n in params else defaults[n] for n in names)
        return await _asyncpg_fetch(conn, adapter, sql, values)

    async def _many_asyncpg(self, conn: AsyncConnection, adapter: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        sql, names, expanding, defaults = self._pg or self._compile_postgres(conn.dialect)
        if expanding:
            raise ValueError("execute_many of a statement with an expanding parameter")
        values = [tuple(row[n] if n in row else defaults[n] for n in names) for row in rows]
        sync = conn.sync_connection
        assert sync is not None
        _announce(sync, None, sql, values, executemany=True)
        async with adapter._execute_mutex:
            try:
                if adapter._transaction is None:
                    await adapter._start_transaction()
                await adapter._connection.executemany(sql, values)
            except Exception as error:
                raise await _wrapped_asyncpg(conn, adapter, sql, values, error) from error

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
        if inline is None:
            adapter = self._asyncpg_connection(conn)
            if adapter is not None:
                return await self._rows_asyncpg(conn, adapter, params)
        prepared = self._sql_and_values(conn.dialect, params) if inline is not None else None
        if inline is None or prepared is None:
            result = await conn.execute(self.statement, dict(params))
            return [tuple(row) for row in result] if result.returns_rows else []
        sql, values = prepared
        cursor = InlineCursor(inline)
        _announce(conn.sync_connection, cursor, sql, values, executemany=False)
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
            adapter = self._asyncpg_connection(conn)
            if adapter is not None:
                await self._many_asyncpg(conn, adapter, rows)
                return
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
        _announce(conn.sync_connection, cursor, sql, values, executemany=True)
        try:
            cursor.executemany(sql, values)
        except sqlite3.Error as error:
            raise _wrapped(sql, values, error, conn.dialect) from error
        finally:
            cursor.close()


class PostgresStatement:
    """A PostgreSQL-only statement written in SQL (``$1``, ``$2``...: the
    parameters in ``names``' order), run by asyncpg as ``PrebuiltStatement``
    runs its statements there: for what Core cannot say in one statement
    (several data-modifying CTEs feeding each other, arrays unnested)."""

    __slots__ = ("names", "sql")

    def __init__(self, sql: str, names: Sequence[str]) -> None:
        self.sql = sql
        self.names = tuple(names)

    async def rows(self, conn: AsyncConnection, params: Mapping[str, Any], *,
                   alone: bool = False) -> list[tuple[Any, ...]]:
        """The statement's rows. ``alone``: if no statement of ``conn``'s
        transaction ran yet, the statement runs on its own, before the
        transaction begins (no BEGIN round trip; COMMIT then has nothing to
        do if no other statement follows). For a read whose rows need no
        snapshot shared with the transaction's later statements (under READ
        COMMITTED each statement has its own anyway), or for a write that is
        the transaction's only one (a statement is atomic on its own)."""
        adapter = PrebuiltStatement._asyncpg_connection(conn)
        if adapter is None:
            raise ValueError(f"a PostgreSQL statement on {conn.dialect.name}/{conn.dialect.driver}")
        return await _asyncpg_fetch(conn, adapter, self.sql, tuple(params[n] for n in self.names), alone=alone)

    async def scalar(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Any:
        found = await self.rows(conn, params)
        return found[0][0] if found else None


async def _asyncpg_fetch(conn: AsyncConnection, adapter: Any, sql: str, values: tuple[Any, ...], *,
                         alone: bool = False) -> list[tuple[Any, ...]]:
    """``sql`` on the asyncpg connection under ``conn``, in its transaction
    (``alone``: see ``PostgresStatement.rows``)."""
    _announce(conn.sync_connection, None, sql, values, executemany=False)
    async with adapter._execute_mutex:
        try:
            if adapter._transaction is None and not alone:
                # What SQLAlchemy's adapter does before its first statement.
                await adapter._start_transaction()
            return [tuple(row) for row in await adapter._connection.fetch(sql, *values)]
        except Exception as error:
            raise await _wrapped_asyncpg(conn, adapter, sql, values, error) from error


def _announce(sync: Connection | None, cursor: InlineCursor | None, sql: str, values: Any, *,
              executemany: bool) -> None:
    """Tells SQLAlchemy's ``before_cursor_execute`` listeners, if any (tests
    counting statements), of the statement, as SQLAlchemy would (without an
    execution context; on asyncpg without a cursor)."""
    if sync is not None and (sync._has_events or sync.engine._has_events):
        sync.dispatch.before_cursor_execute(sync, cursor, sql, values, None, executemany)


def _wrapped(sql: str, values: Any, error: sqlite3.Error, dialect: Dialect) -> Exception:
    """The error as SQLAlchemy raises it for the same statement (IntegrityError,
    OperationalError, ...: subclasses of DBAPIError, which callers catch)."""
    return DBAPIError.instance(sql, values, error, sqlite3.Error, dialect=dialect)


async def _wrapped_asyncpg(conn: AsyncConnection, adapter: Any, sql: str, values: Any, error: Exception) -> Exception:
    """An asyncpg error as SQLAlchemy raises it for the same statement
    (IntegrityError, ...); a lost connection is invalidated, as SQLAlchemy
    does, so the pool does not hand it out again."""
    dialect = conn.dialect
    dbapi_error: Any = dialect.loaded_dbapi.Error
    try:
        adapter._handle_exception(error)
    except Exception as translated:
        wrapped = DBAPIError.instance(sql, values, translated, dbapi_error, dialect=dialect,
                                      connection_invalidated=dialect.is_disconnect(cast(Any, translated), adapter, None))
    else:  # pragma: no cover - _handle_exception always raises
        wrapped = DBAPIError.instance(sql, values, error, dbapi_error, dialect=dialect)
    if isinstance(wrapped, DBAPIError) and wrapped.connection_invalidated:
        await conn.invalidate(wrapped)
    return wrapped
