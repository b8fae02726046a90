"""Storage infrastructure every component's database layer is built on.

Each component owns its own database (its own SQLite file, or its own
PostgreSQL database) and its own Alembic history under
``migrations/<component>/``, recorded in its own version table
(``alembic_version_<component>``), so several components can also share one
database. Tables are SQLAlchemy Core ``Table`` objects, one set for both
engines; the only dialect-specific statement most code needs is the upsert,
which ``upsert_statement`` builds.

    db = await open_database(database_url_for("roomserver", postgres_url=None, data_dir=d),
                             "roomserver")
    async with db.transaction() as conn:       # one write transaction
        await conn.execute(db.upsert(rooms, {"room_id": r, "version": "11"}, ["room_id"]))
    async with db.connect() as conn:           # reads (a transaction that is rolled back)
        row = (await conn.execute(select(rooms))).first()
    await db.close()

``open_database`` upgrades the component's schema to the newest revision this
code knows and refuses to run against a database a newer Myelin has migrated
(``SchemaTooNewError``). The same Alembic environment code
(``run_alembic_env``, called from every ``migrations/<component>/env.py``)
serves both that path and an operator running ``alembic`` by hand.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import aiosqlite
from sqlalchemy import Connection, Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool
from sqlalchemy.sql.dml import Insert

from common.sqlite_connection import InlineDBAPI, fused_connect

if TYPE_CHECKING:
    # Alembic (and Mako, its template engine) is imported only where
    # migrations run: a server whose schemas another process brought to head
    # (homeserver/migrate.py) never loads it (~11 MB resident).
    from alembic.config import Config
    from alembic.script import ScriptDirectory

logger = logging.getLogger(__name__)

#: Where the components' Alembic histories live in a source checkout.
MIGRATIONS_ROOT = Path(__file__).resolve().parent.parent / "migrations"

#: How long a SQLite connection waits for another writer before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: Whether SQLite statements run in one trip to aiosqlite's thread each
#: (common/sqlite_connection.py) rather than aiosqlite's four; the environment
#: variable MYELIN_SQLITE_FUSED=0 turns it off. Only for the "thread" driver.
SQLITE_FUSED_STATEMENTS = os.environ.get("MYELIN_SQLITE_FUSED", "1") != "0"

#: The SQLite drivers (common/sqlite_connection.py): "inline" runs sqlite3 on
#: the event loop's thread, "thread" through aiosqlite's thread per connection.
SQLITE_DRIVERS = ("inline", "thread")

#: The SQLite driver engines use unless told otherwise: $MYELIN_SQLITE_DRIVER.
SQLITE_DRIVER = os.environ.get("MYELIN_SQLITE_DRIVER", "inline")
if SQLITE_DRIVER not in SQLITE_DRIVERS:
    raise ValueError(f"MYELIN_SQLITE_DRIVER must be one of {', '.join(SQLITE_DRIVERS)}: {SQLITE_DRIVER!r}")

#: SQLite pool defaults per component engine: connections kept open between uses, and
#: how many more a burst of concurrent reads may open (closed again when returned).
#: Each open connection holds its own page cache, parsed schema and prepared
#: statements (and, on the thread driver, a thread): with seven components, a pool of
#: 5 kept ~30 connections and 12 MB of SQLite memory open after the benchmark.
SQLITE_POOL_SIZE = 2
SQLITE_MAX_OVERFLOW = 13
#: Each SQLite connection's page cache, KiB (SQLite's default is 2,000).
SQLITE_CACHE_KIB = 256

#: PostgreSQL pool defaults per component engine (overridable in open_database).
POSTGRES_POOL_SIZE = 10
POSTGRES_MAX_OVERFLOW = 10
#: PostgreSQL session settings for a component whose statements are lookups
#: by key (``open_database(generic_plans=True)``): each prepared statement is
#: planned once, not at every execution. PostgreSQL otherwise keeps planning
#: anew a statement whose generic plan it costs higher than its custom ones,
#: as it does those taking arrays: the room server's read of what an input
#: batch needs spent 0.42 ms of its 0.53 ms planning (0.14 ms of 0.27 ms
#: generic). Not for statements over ranges of positions, whose plan may
#: depend on the values.
GENERIC_PLANS = (("plan_cache_mode", "force_generic_plan"),)

_COMPONENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# Execution option that tells the SQLite "begin" hook which BEGIN to emit.
_SQLITE_BEGIN_OPTION = "myelin_sqlite_begin"


class SchemaError(RuntimeError):
    """The database's schema cannot be used by this version of Myelin."""


class SchemaTooNewError(SchemaError):
    """The database was migrated by a newer Myelin: its revision is not one this code knows.

    Running older code against a newer schema could corrupt data, so startup stops here.
    """

    def __init__(self, component: str, revisions: Sequence[str], known_heads: Sequence[str]) -> None:
        self.component = component
        self.revisions = tuple(revisions)
        self.known_heads = tuple(known_heads)
        super().__init__(
            f"the {component} database is at revision(s) {', '.join(self.revisions)}, which this "
            f"version of Myelin does not know (its newest: {', '.join(self.known_heads) or 'none'}); "
            "a newer Myelin has migrated it. Run that version, or restore a backup."
        )


def version_table_name(component: str) -> str:
    """The Alembic version table of ``component``: ``alembic_version_<component>``."""
    _check_component_name(component)
    return f"alembic_version_{component}"


def _check_component_name(component: str) -> None:
    # The name becomes part of table and database names, so keep it an identifier.
    if not _COMPONENT_NAME.match(component):
        raise ValueError(f"component name must match {_COMPONENT_NAME.pattern}: {component!r}")


# --------------------------------------------------------------------------- upserts

#: Columns of the row proposed for insertion, as ``excluded.<column>`` expressions.
Excluded: TypeAlias = Any
#: What an upsert sets on conflict: column names (copied from the proposed row), a mapping of
#: column name to value or SQL expression, or a function of the proposed row's columns
#: returning such a mapping (``lambda excluded: {"n": table.c.n + excluded.n}``).
UpsertSet: TypeAlias = Sequence[str] | Mapping[str, Any] | Callable[[Excluded], Mapping[str, Any]]


def _dialect_insert(dialect_name: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"no upsert for the {dialect_name!r} dialect")


def upsert_statement(
    dialect_name: str,
    table: Table,
    values: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    index_elements: Sequence[str],
    set_: UpsertSet | None = None,
    *,
    where: Any = None,
    index_where: Any = None,
) -> Insert:
    """``INSERT ... ON CONFLICT (index_elements) DO UPDATE SET ...`` for ``dialect_name``.

    ``values`` is one row or a list of rows (all with the same keys). ``set_`` says what to
    update on conflict; by default every column given in ``values`` that is not part of the
    conflict target is overwritten with the proposed value. When there is nothing to set
    (``set_=[]``, or every given column is in the target) the statement is ``DO NOTHING``.
    ``where`` makes the update conditional; ``index_where`` names a partial unique index.
    The result is an ``Insert``, so ``.returning(...)`` can be chained on it.
    """
    stmt = _dialect_insert(dialect_name, table).values(values)
    if isinstance(values, Mapping):
        given = list(values)
    elif values:
        given = list(values[0])
    else:
        raise ValueError("upsert needs at least one row")
    target = list(index_elements)
    assignments: Mapping[str, Any]
    if set_ is None:
        assignments = {name: stmt.excluded[name] for name in given if name not in target}
    elif isinstance(set_, Mapping):
        assignments = set_
    elif callable(set_):
        assignments = set_(stmt.excluded)
    else:
        assignments = {name: stmt.excluded[name] for name in set_}
    if not assignments:
        return stmt.on_conflict_do_nothing(index_elements=target, index_where=index_where)
    return stmt.on_conflict_do_update(
        index_elements=target, index_where=index_where, set_=dict(assignments), where=where
    )


def insert_or_ignore_statement(
    dialect_name: str,
    table: Table,
    values: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    index_elements: Sequence[str] | None = None,
) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING``; without ``index_elements`` any conflict is ignored."""
    stmt = _dialect_insert(dialect_name, table).values(values)
    return stmt.on_conflict_do_nothing(index_elements=list(index_elements) if index_elements else None)


# --------------------------------------------------------------------------- the database


class Database:
    """One component's database: an ``AsyncEngine`` plus transaction helpers.

    ``transaction()`` is a write transaction committed when the block ends without an
    exception and rolled back otherwise. ``connect()`` is for reads: its statements share
    one transaction (one consistent snapshot on SQLite), which is rolled back at the end.

    SQLite allows one writer at a time, so on SQLite write transactions queue on an
    ``asyncio.Lock`` (first come, first served, no polling) before taking the file's write
    lock. Hence: do not open a write transaction while holding another on the same database
    (directly, or by awaiting a task that opens one): in the same task it raises
    ``RuntimeError`` at once; from another task it waits and raises ``TimeoutError`` after
    ``SQLITE_BUSY_TIMEOUT_MS``. Reads (``connect()``) never wait for writers.
    """

    def __init__(self, engine: AsyncEngine, component: str) -> None:
        self._engine = engine
        self.component = component
        self._sqlite_writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        # Moves when a write transaction of this process begins and when it
        # ends: a cache of read results is valid while the generation it was
        # read at is the current one (see ``write_generation``).
        self._write_generation = 0
        self._writer_task: asyncio.Task[Any] | None = None
        # SQLite: the connection write transactions run on, one after another
        # (they queue on ``_sqlite_writer``), kept between them: taking one
        # from the pool, setting its BEGIN mode and giving it back (a task, a
        # rollback) cost ~110 us of CPU a write transaction, about a third.
        self._writer_conn: AsyncConnection | None = None

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def dialect_name(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @property
    def write_generation(self) -> int:
        """For caches of reads that this process's writes may change: a value
        read while the generation stayed the same may be kept, and is valid
        until the generation moves. A write that overlaps the read moves it at
        its start or at its end, so the value is never kept past it."""
        return self._write_generation

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        self._write_generation += 1
        try:
            async with self._transaction() as conn:
                yield conn
        finally:
            self._write_generation += 1

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        if self._sqlite_writer is None:
            async with self._engine.connect() as conn, conn.begin():
                yield conn
            return
        task = asyncio.current_task()
        if task is not None and task is self._writer_task:
            raise RuntimeError(
                f"nested write transaction on the {self.component} database: it would wait for itself"
            )
        try:
            async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_MS / 1000):
                await self._sqlite_writer.acquire()
        except TimeoutError:
            raise TimeoutError(
                f"waited {SQLITE_BUSY_TIMEOUT_MS} ms for the {self.component} database's write lock"
            ) from None
        self._writer_task = task
        try:
            conn = await self._sqlite_writer_connection()
            try:
                async with conn.begin():
                    yield conn
            except BaseException as error:
                # A transaction that failed and rolled back leaves the connection
                # as it found it; anything else (cancelled mid-commit, a lost
                # connection) may not: that one is closed, and the next
                # transaction takes another.
                if not (isinstance(error, Exception) and not conn.closed and not conn.invalidated
                        and not conn.in_transaction()):
                    self._writer_conn = None
                    await asyncio.shield(asyncio.ensure_future(conn.close()))
                raise
        finally:
            self._writer_task = None
            self._sqlite_writer.release()

    async def _sqlite_writer_connection(self) -> AsyncConnection:
        conn = self._writer_conn
        if conn is None or conn.closed or conn.invalidated:
            conn = await self._engine.connect()
            # Take SQLite's write lock up front too: a deferred transaction that reads and
            # then writes fails at once (SQLITE_BUSY) if another process wrote in between.
            await conn.execution_options(**{_SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            self._writer_conn = conn
        return conn

    @asynccontextmanager
    async def connect(self, *, autocommit: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection for reads, in a transaction that is rolled back.
        With ``autocommit``, on PostgreSQL, each statement runs on its own
        instead: at PostgreSQL's READ COMMITTED each statement of a
        transaction sees its own snapshot all the same, and the BEGIN and
        ROLLBACK are two round trips of each read (SQLite keeps the
        transaction, where it is one snapshot for all statements)."""
        async with self._engine.connect() as conn:
            if autocommit and self._engine.dialect.name == "postgresql":
                # Reset to the pool's default when the connection goes back.
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    def upsert(
        self,
        table: Table,
        values: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        index_elements: Sequence[str],
        set_: UpsertSet | None = None,
        *,
        where: Any = None,
        index_where: Any = None,
    ) -> Insert:
        """See ``upsert_statement``."""
        return upsert_statement(
            self.dialect_name, table, values, index_elements, set_, where=where, index_where=index_where
        )

    def insert_or_ignore(
        self,
        table: Table,
        values: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        index_elements: Sequence[str] | None = None,
    ) -> Insert:
        """See ``insert_or_ignore_statement``."""
        return insert_or_ignore_statement(self.dialect_name, table, values, index_elements)

    async def close(self) -> None:
        writer, self._writer_conn = self._writer_conn, None
        if writer is not None:
            await writer.close()
        await self._engine.dispose()


# --------------------------------------------------------------------------- engines and URLs


def normalize_url(url: str | URL) -> URL:
    """The async-driver form of a database URL: sqlite → aiosqlite, postgres(ql) → asyncpg."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database URL (want sqlite or postgresql): {parsed!r}")


def _is_memory_sqlite(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def _on_sqlite_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry,
                       *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
    # Let SQLAlchemy's "begin" hook emit BEGIN itself: the driver's own implicit BEGIN would
    # leave DDL (migrations) outside the transaction and cannot take the write lock early.
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # Every connection has its own page cache (2 MB by default) on top of
        # the OS's cache of the file; pages missed here are a read from that.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    finally:
        cursor.close()


def _on_inline_sqlite_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    # SQLite's busy handler would sleep on the loop's thread (see common/sqlite_connection.py):
    # an inline connection never waits there; BEGIN IMMEDIATE waits by yielding the loop.
    _on_sqlite_connect(dbapi_connection, record, busy_timeout_ms=0)


def _on_sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(_SQLITE_BEGIN_OPTION, "DEFERRED")
    statement = f"BEGIN {mode}"
    # On the driver's cursor (which waits for the write lock, see
    # common/sqlite_connection.py) rather than exec_driver_sql: SQLAlchemy's
    # statement machinery cost ~20 us of every transaction. Errors are raised
    # as SQLAlchemy raises them.
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(statement)
    except conn.dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(statement, (), error, conn.dialect.loaded_dbapi.Error,
                                  dialect=conn.dialect) from error
    finally:
        cursor.close()


def create_engine_for(
    url: str | URL, *, pool_size: int | None = None, max_overflow: int | None = None,
    null_pool: bool = False, fused_statements: bool = SQLITE_FUSED_STATEMENTS,
    sqlite_driver: str | None = None, strict_writes: bool = False, generic_plans: bool = False,
) -> AsyncEngine:
    """An ``AsyncEngine`` for ``url`` set up the way Myelin uses each backend.

    SQLite (SQLAlchemy's aiosqlite dialect): WAL, synchronous=NORMAL, foreign keys on, a busy
    timeout, and real transactions (including DDL) begun by SQLAlchemy. ``sqlite_driver``
    (default ``SQLITE_DRIVER``) picks how statements run (``common.sqlite_connection``):
    "inline" on the loop's thread, where ``strict_writes`` makes a write outside a
    ``BEGIN IMMEDIATE`` transaction an error; "thread" on aiosqlite's thread, where with
    ``fused_statements`` each statement is one trip to it. PostgreSQL (asyncpg): a bounded pool;
    with ``generic_plans`` its sessions plan each prepared statement once (``GENERIC_PLANS``).
    """
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {}
    if null_pool:
        kwargs["poolclass"] = NullPool
    if parsed.get_backend_name() == "sqlite":
        if _is_memory_sqlite(parsed):
            # Every pooled connection to ":memory:" would be a different, empty database.
            raise ValueError("use a SQLite file (a temporary directory in tests), not :memory:")
        if not null_pool:
            kwargs["pool_size"] = pool_size if pool_size is not None else SQLITE_POOL_SIZE
            kwargs["max_overflow"] = max_overflow if max_overflow is not None else SQLITE_MAX_OVERFLOW
        driver = sqlite_driver or SQLITE_DRIVER
        if driver not in SQLITE_DRIVERS:
            raise ValueError(f"unknown SQLite driver {driver!r}: one of {', '.join(SQLITE_DRIVERS)}")
        if driver == "inline":
            kwargs["module"] = InlineDBAPI(strict_writes=strict_writes, lock_wait_ms=SQLITE_BUSY_TIMEOUT_MS)
        elif fused_statements:
            connect_args, connect_kwargs = SQLiteDialect_aiosqlite().create_connect_args(parsed)

            async def connect_fused() -> aiosqlite.Connection:
                return await fused_connect(*connect_args, **connect_kwargs)

            kwargs["async_creator"] = connect_fused
        engine = create_async_engine(parsed, **kwargs)
        event.listen(engine.sync_engine, "connect",
                     _on_inline_sqlite_connect if driver == "inline" else _on_sqlite_connect)
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
        return engine
    if not null_pool:
        kwargs["pool_size"] = pool_size if pool_size is not None else POSTGRES_POOL_SIZE
        kwargs["max_overflow"] = max_overflow if max_overflow is not None else POSTGRES_MAX_OVERFLOW
        # Connections older than this are replaced, so none outlives a server-side timeout.
        kwargs["pool_recycle"] = 3600
    if generic_plans:
        kwargs["connect_args"] = {"server_settings": dict(GENERIC_PLANS)}
    return create_async_engine(parsed, **kwargs)


def database_url_for(
    component: str, *, postgres_url: str | None, data_dir: Path, separate_databases: bool = True
) -> str:
    """The database URL a component uses.

    With ``postgres_url`` (a base such as ``postgresql://user@host:5432/myelin``) each component
    gets its own database named ``<db>_<component>`` (``myelin_roomserver``; the base database
    name defaults to ``myelin``), or, with ``separate_databases=False``, the base database itself,
    shared (each component keeps its own tables and version table). ``open_database`` creates a
    missing PostgreSQL database. Without it: ``sqlite+aiosqlite:///<data_dir>/<component>.db``.
    """
    _check_component_name(component)
    if postgres_url:
        base = normalize_url(postgres_url)
        if base.get_backend_name() != "postgresql":
            raise ValueError(f"not a PostgreSQL URL: {base!r}")
        if separate_databases:
            base = base.set(database=f"{base.database or 'myelin'}_{component}")
        return base.render_as_string(hide_password=False)
    return f"sqlite+aiosqlite:///{(Path(data_dir) / f'{component}.db').resolve()}"


async def ensure_postgres_database(url: str | URL) -> bool:
    """Create the PostgreSQL database ``url`` names if it does not exist; True if created.

    Connects to the ``postgres`` maintenance database (``template1`` as a fallback) of the same
    server with the same credentials; safe when several processes race to create it.
    """
    target = normalize_url(url)
    name = target.database
    if target.get_backend_name() != "postgresql" or not name:
        raise ValueError(f"not a PostgreSQL database URL: {target!r}")
    # When it exists, no maintenance access is needed (a DBA may have created it for a
    # role that cannot connect anywhere else).
    probe = create_async_engine(target, poolclass=NullPool)
    try:
        async with probe.connect() as conn:
            await conn.execute(text("SELECT 1"))
            return False
    except DBAPIError as e:
        if "does not exist" not in str(e):
            raise
    finally:
        await probe.dispose()
    last_error: Exception | None = None
    for maintenance_db in ("postgres", "template1"):
        engine = create_async_engine(
            target.set(database=maintenance_db), poolclass=NullPool, isolation_level="AUTOCOMMIT"
        )
        try:
            async with engine.connect() as conn:
                exists = await conn.scalar(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                )
                if exists:
                    return False
                quoted = conn.dialect.identifier_preparer.quote_identifier(name)
                try:
                    await conn.execute(text(f"CREATE DATABASE {quoted}"))
                except DBAPIError:
                    # Another process may have created it between our check and CREATE.
                    if await conn.scalar(
                        text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                    ):
                        return False
                    raise
                logger.info("created PostgreSQL database %s", name)
                return True
        except DBAPIError as e:
            last_error = e
            if "does not exist" not in str(e):  # only fall back when the maintenance db is missing
                raise
        finally:
            await engine.dispose()
    assert last_error is not None
    raise last_error


# --------------------------------------------------------------------------- migrations


def alembic_config(component: str, migrations_root: Path | None = None) -> Config:
    """An Alembic ``Config`` for ``component`` built in code (no ini file is read)."""
    from alembic.config import Config

    _check_component_name(component)
    script_location = (migrations_root or MIGRATIONS_ROOT) / component
    if not (script_location / "env.py").is_file():
        raise FileNotFoundError(f"no Alembic environment for {component}: {script_location}/env.py")
    config = Config()
    # Config values go through ConfigParser interpolation, where "%" is special.
    config.set_main_option("script_location", str(script_location).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["myelin_component"] = component
    return config


def _heads_of(script: ScriptDirectory) -> list[str]:
    return list(script.get_heads())


def _check_and_upgrade(sync_conn: Connection, config: Config, component: str) -> None:
    """Upgrade ``component``'s schema to head on ``sync_conn`` inside its open transaction."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util.exc import CommandError

    if sync_conn.dialect.name == "postgresql":
        # Several processes (instances of one component) may start together: one migrates,
        # the others wait here and then find the schema at head. Released at commit.
        lock_key = zlib.crc32(f"myelin-migrate-{component}".encode())
        sync_conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
    script = ScriptDirectory.from_config(config)
    context = MigrationContext.configure(sync_conn, opts={"version_table": version_table_name(component)})
    current = context.get_current_heads()
    unknown = []
    for revision in current:
        try:
            if script.get_revision(revision) is None:
                unknown.append(revision)
        except (RevisionError, CommandError):
            unknown.append(revision)
    if unknown:
        raise SchemaTooNewError(component, unknown, _heads_of(script))
    config.attributes["connection"] = sync_conn
    try:
        command.upgrade(config, "head")
    finally:
        del config.attributes["connection"]


#: Schemas another process has just brought to head (``note_schema_at_head``):
#: (URL, component) -> the revisions it left in the version table.
_SCHEMAS_AT_HEAD: dict[tuple[str, str], frozenset[str]] = {}


def _url_key(url: str | URL) -> str:
    return normalize_url(url).render_as_string(hide_password=False)


def note_schema_at_head(url: str, component: str, revisions: Sequence[str]) -> None:
    """Records that another process (homeserver/migrate.py) has upgraded ``component``'s
    database at ``url`` to head, leaving ``revisions`` in its version table. ``open_database``
    then only checks that the table still holds exactly those and does not load Alembic;
    anything else (an older or newer schema) takes the usual path, which upgrades or refuses."""
    _check_component_name(component)
    if not revisions:
        raise ValueError(f"no revisions for {component}: a migrated schema has at least one")
    _SCHEMAS_AT_HEAD[(_url_key(url), component)] = frozenset(revisions)


def forget_schemas_at_head() -> None:
    """Drops every ``note_schema_at_head`` record (for tests)."""
    _SCHEMAS_AT_HEAD.clear()


async def _recorded_revisions(engine: AsyncEngine, component: str) -> frozenset[str] | None:
    """The version table's revisions read with plain SQL, or None when it cannot be read."""
    try:
        async with engine.connect() as conn:
            rows = await conn.exec_driver_sql(f"SELECT version_num FROM {version_table_name(component)}")
            return frozenset(str(row[0]) for row in rows)
    except DBAPIError:  # no version table: never migrated
        return None


async def _is_noted_at_head(engine: AsyncEngine, url: str | URL, component: str) -> bool:
    expected = _SCHEMAS_AT_HEAD.get((_url_key(url), component))
    if expected is None:
        return False
    return await _recorded_revisions(engine, component) == expected


async def upgrade_to_head(engine: AsyncEngine, component: str, migrations_root: Path | None = None) -> None:
    """Run ``component``'s migrations up to head in one transaction (refusing a newer schema)."""
    config = alembic_config(component, migrations_root)
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            await conn.execution_options(**{_SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        async with conn.begin():
            await conn.run_sync(_check_and_upgrade, config, component)


async def current_revisions(engine: AsyncEngine, component: str) -> tuple[str, ...]:
    """The revision(s) ``component``'s version table records (empty when never migrated)."""
    from alembic.runtime.migration import MigrationContext

    def read(sync_conn: Connection) -> tuple[str, ...]:
        context = MigrationContext.configure(
            sync_conn, opts={"version_table": version_table_name(component)}
        )
        return tuple(context.get_current_heads())

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def open_database(
    url: str,
    component: str,
    *,
    migrations_root: Path | None = None,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    create_database: bool = True,
    generic_plans: bool = False,
) -> Database:
    """Open ``component``'s database at ``url`` with its schema upgraded to head.

    Creates a missing SQLite file (and its directory) or, with ``create_database``, a missing
    PostgreSQL database, whose sessions use ``GENERIC_PLANS`` with ``generic_plans``. Raises
    ``SchemaTooNewError`` when the database's revision is not one in
    ``migrations_root/<component>`` (default: the repository's ``migrations/``). A schema
    recorded with ``note_schema_at_head`` and still at those revisions is opened as it is.
    """
    _check_component_name(component)
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not _is_memory_sqlite(parsed) and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    elif create_database:
        await ensure_postgres_database(parsed)
    # Everything the components write goes through Database.transaction() (or a migration):
    # a write elsewhere is a bug the inline driver reports (see common/sqlite_connection.py).
    engine = create_engine_for(parsed, pool_size=pool_size, max_overflow=max_overflow, strict_writes=True,
                               generic_plans=generic_plans)
    try:
        if migrations_root is not None or not await _is_noted_at_head(engine, parsed, component):
            await upgrade_to_head(engine, component, migrations_root)
    except BaseException:
        await engine.dispose()
        raise
    return Database(engine, component)


def run_alembic_env(component: str) -> None:
    """The body of every ``migrations/<component>/env.py``.

    Called by ``open_database`` (which hands over its connection in
    ``config.attributes["connection"]``), or by the ``alembic`` command line, where the URL
    comes from ``-x url=...``, else ``$MYELIN_DATABASE_URL``, else ``sqlalchemy.url`` in the
    component's section of ``migrations/alembic.ini``. ``--sql`` (offline) mode is supported.
    """
    from alembic import context  # only importable while Alembic runs an environment

    config = context.config
    expected = config.attributes.get("myelin_component")
    if expected is not None and expected != component:
        # A copied env.py with the wrong name would write another component's version table.
        raise SchemaError(f"migrations/{expected}/env.py runs the environment of {component!r}")
    options: dict[str, Any] = {
        "version_table": version_table_name(component),
        "target_metadata": None,
    }
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
        return

    if config.config_file_name is not None and config.file_config.has_section("loggers"):
        from logging.config import fileConfig

        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("MYELIN_DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise SchemaError(
            "no database URL: pass -x url=..., set MYELIN_DATABASE_URL, or set sqlalchemy.url "
            f"in the [{component}] section of migrations/alembic.ini"
        )
    if context.is_offline_mode():
        context.configure(url=normalize_url(url), literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(sync_conn: Connection) -> None:
        context.configure(connection=sync_conn, **options)
        with context.begin_transaction():
            context.run_migrations()

    async def run_online() -> None:
        engine = create_engine_for(url, null_pool=True)
        try:
            async with engine.connect() as conn:
                if engine.dialect.name == "sqlite":
                    await conn.execution_options(**{_SQLITE_BEGIN_OPTION: "IMMEDIATE"})
                async with conn.begin():
                    await conn.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(run_online())
