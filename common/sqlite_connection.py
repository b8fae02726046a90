"""The two SQLite drivers under SQLAlchemy's aiosqlite dialect.

``thread`` (aiosqlite, with fused statements): each connection has its own
thread. SQLAlchemy's aiosqlite adapter makes, for every statement, separate
calls to that thread to create a cursor, execute, fetch the rows and close
the cursor; each trip is a queue put, a wake-up of the thread, a
``call_soon_threadsafe`` back and a GIL hand-off both ways. ``FusedCursor``
makes it one trip per statement: the cursor is created and the rows fetched
in the same trip as the execute, and closing is left to the garbage
collector (a finished sqlite3 statement holds no lock).

``inline`` (``InlineDBAPI``, the default): sqlite3 is called directly on the
event loop's thread, inside SQLAlchemy's greenlet, with no thread, no queue
and no loop iteration per statement. A statement takes tens of microseconds;
the trip to a thread and back cost more than that (the server's CPU per sent
message fell by about a fifth), and with one interpreter lock the thread
could not run Python meanwhile anyway. A long statement (a big initial
/sync's reads, /messages far back, a migration) now holds the loop for its
duration. With the thread driver the loop could run other Python while
sqlite3 stepped (it releases the GIL during a step), but the rows are built
into Python objects under the lock either way, the loop had nothing else
ready most of that time, and on a two-core machine the loop and that thread
competed for the same cores: the measured send -> /sync delivery p99 was no
worse inline (132 and 254 ms against 144 and 256 ms with the thread driver,
two runs each of 200 messages, loaded machine). Leaving a connection still
yields to the loop (SQLAlchemy closes it in a task of its own), so a task
that reads or writes in a loop does not starve the others.

What running on the loop thread changes, and how this module keeps it safe:

* SQLite's busy handler sleeps in the calling thread. If a connection waited
  there for the write lock while the transaction holding it is a coroutine on
  the same loop, the holder could never finish: a deadlock until the busy
  timeout. So inline connections have a busy timeout of 0, and the only
  statement that waits for the write lock is ``BEGIN IMMEDIATE`` /
  ``BEGIN EXCLUSIVE`` (``Database.transaction()`` and migrations): on
  ``SQLITE_BUSY`` it retries after an ``asyncio.sleep`` (the loop runs the
  holder meanwhile) until ``busy_timeout_ms``. In-process writers queue on
  ``Database``'s ``asyncio.Lock`` first, so this wait only happens for
  another process's writer.
* A write anywhere else (in a read transaction from ``Database.connect()``,
  or in autocommit) would need the write lock without having queued for it;
  with ``strict_writes`` (engines made by ``open_database``) it raises
  ``WriteOutsideWriteTransaction`` at once, whether or not another writer is
  active, so tests find such a path instead of it failing (or, with a busy
  handler, hanging) only under load.
* ``COMMIT`` runs inline too. In WAL mode with ``synchronous=NORMAL`` (set
  in common/storage.py) a commit only appends the transaction's pages to the
  ``-wal`` file: no fsync (the one exception: the first commit after the WAL
  was reset syncs the new WAL header, once per checkpoint cycle). Durability
  is unchanged: the pages are in the OS's cache when COMMIT returns, so they
  survive the process being killed, and the WAL is synced before every
  checkpoint copies it into the database file. What did wait for the disk is
  SQLite's automatic checkpoint, which a COMMIT runs every thousand WAL
  pages (fsyncs of the WAL and the database file): inline connections turn
  it off (``PRAGMA wal_autocheckpoint=0``). Sending COMMIT to a thread cost a
  loop turn on each side for every write transaction (on a two-core machine
  the thread only ran once the loop let go of the interpreter lock), on the
  path of every sent message. After the COMMIT the task still lets the
  loop's other ready tasks run once (``sleep(0)``, no thread), so a task
  that writes in a loop does not starve them.
* Checkpoints run off the loop instead (``WalCheckpointer``): after a write
  transaction's COMMIT the ``-wal`` file's size is looked at (one ``stat``);
  past ``WAL_CHECKPOINT_BYTES`` one ``PRAGMA wal_checkpoint(PASSIVE)`` is
  started on a checkpoint thread, with a connection of its own opened there,
  at most one at a time per database file. PASSIVE neither waits for nor
  blocks a reader or a writer; it does the copying and the fsyncs. But SQLite
  resets the WAL (writes it from the start again) only when a write
  transaction begins with the WAL fully copied and no reader using it, which
  a checkpoint racing the loop's commits seldom leaves; readers of old
  snapshots also keep PASSIVE checkpoints partial. So past
  ``WAL_RESTART_BYTES`` the committing connection runs ``wal_checkpoint(RESTART)``
  itself: on the loop, with its busy timeout of 0, so it waits for nothing
  (busy: tried again once the WAL has grown another step); after the thread's
  checkpoints it has little left to copy, and the next write transaction,
  on this loop, resets the WAL. A RESTART on the thread does not work here:
  it polls for the write lock, which a loop writing without pause keeps
  taking first, and meanwhile holds the checkpoint lock. The WAL file is cut
  back to ``WAL_CHECKPOINT_BYTES`` when it is reset (``journal_size_limit``).
  When the process's last inline connection to a file closes, it
  checkpoints what is left (on the loop: the database is being closed).
* SQLAlchemy's aiosqlite adapter sets ``isolation_level`` by putting a call
  straight on aiosqlite's thread queue; a connection without a thread never
  answers it. That, not the busy handler, is why monkeypatching aiosqlite to
  run inline hung at startup (the first connection's setup); ``InlineConnection``
  sets it directly.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection, AsyncAdapt_aiosqlite_dbapi
from sqlalchemy.util.concurrency import await_, in_greenlet


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


# --------------------------------------------------------------------------- inline


class WriteOutsideWriteTransaction(sqlite3.OperationalError):
    """A statement that writes ran outside a ``BEGIN IMMEDIATE`` transaction
    (``Database.transaction()``) on an inline connection: it did not queue for
    the write lock, so under contention it could only fail (or deadlock)."""


#: The first words of statements that write; a statement SQLAlchemy or a
#: migration builds starts with one of them (no leading comments or CTEs).
_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")

#: ``BEGIN`` forms that take the write lock at once.
_WRITE_BEGINS = ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")

#: First and longest pause between tries of a ``BEGIN IMMEDIATE`` that found
#: the write lock taken (by another process: in-process writers queue before it).
_LOCK_RETRY_FIRST_S = 0.001
_LOCK_RETRY_MAX_S = 0.05


async def _nothing() -> None:
    return None


def _switch_to_loop_greenlet() -> None:
    """One switch to the awaiting side of SQLAlchemy's greenlet bridge and back,
    without waiting for anything: ``AsyncConnection.execute`` insists that its
    statement awaited something (to catch a synchronous driver by mistake)."""
    if in_greenlet():
        await_(_nothing())


logger = logging.getLogger(__name__)

#: The ``-wal`` file size past which a write transaction's COMMIT starts a
#: background checkpoint: about SQLite's own automatic checkpoint (1,000 pages
#: of 4 KiB), which inline connections turn off. Also the size the WAL file
#: is cut back to when it is reset (``PRAGMA journal_size_limit``). The file
#: only grows when its frames outrun it, so its size is a cheap (one ``stat``)
#: upper bound of the frames not yet checkpointed.
WAL_CHECKPOINT_BYTES = 4 * 1024 * 1024

#: Past this size the committing connection runs a RESTART checkpoint itself,
#: on the loop, without waiting for anything (see the module docstring).
WAL_RESTART_BYTES = 4 * WAL_CHECKPOINT_BYTES

#: The checkpoint thread's busy timeout (a PASSIVE checkpoint never waits
#: for a lock: this only covers opening its connection).
CHECKPOINT_WAIT_S = 1.0

#: Where background checkpoints run: one at a time per database file.
_CHECKPOINT_THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="sqlite-checkpoint")


class WalCheckpointer:
    """Checkpoints of one SQLite database file's WAL, for the inline
    connections of this process (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.wal_path = path + "-wal"
        #: Inline connections of this process open to the file.
        self.connections = 0
        #: Background (PASSIVE) checkpoints finished, and the last one's answer:
        #: (busy, WAL frames, frames checkpointed).
        self.checkpoints = 0
        self.last_result: tuple[int, int, int] | None = None
        #: RESTART checkpoints tried on the loop, and how many of them finished.
        self.restarts_tried = 0
        self.restarts = 0
        self._running: concurrent.futures.Future[None] | None = None
        # The WAL file's size when the last checkpoint was started or tried:
        # while it stays at or above that, the WAL has not been reset since,
        # and the next one waits for it to grow by another step.
        self._tried_at_bytes = 0

    def after_commit(self, connection: sqlite3.Connection) -> None:
        """On the loop, after ``connection``'s write transaction's COMMIT:
        start or run a checkpoint if the WAL is due one."""
        try:
            size = os.stat(self.wal_path).st_size
        except OSError:
            return
        if size <= WAL_CHECKPOINT_BYTES:
            return
        tried_at = self._tried_at_bytes
        if tried_at <= size < tried_at + WAL_CHECKPOINT_BYTES // 4:
            return
        if size > WAL_RESTART_BYTES:
            self._tried_at_bytes = size
            self.restart(connection)
        else:
            self.start(size)

    def restart(self, connection: sqlite3.Connection) -> None:
        """A RESTART checkpoint with ``connection`` (on the loop: its busy
        timeout is 0, so it gives up at once where it would wait)."""
        self.restarts_tried += 1
        try:
            busy, _frames, _done = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.Error:
            # After a COMMIT that succeeded: its caller must not see this as its failure.
            logger.warning("RESTART checkpoint of %s failed", self.path, exc_info=True)
            return
        if not busy:
            self.restarts += 1

    def start(self, size: int) -> bool:
        """Start a PASSIVE checkpoint on a checkpoint thread unless one is running; whether it started."""
        running = self._running
        if running is not None and not running.done():
            return False
        self._tried_at_bytes = size
        self._running = _CHECKPOINT_THREADS.submit(self._checkpoint)
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Until the running background checkpoint (if any) has finished."""
        running = self._running
        if running is not None:
            concurrent.futures.wait([running], timeout=timeout)

    def _checkpoint(self) -> None:
        # In the checkpoint thread, with a connection of its own.
        try:
            connection = sqlite3.connect(self.path, timeout=CHECKPOINT_WAIT_S, isolation_level=None)
            try:
                busy, frames, done = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                connection.close()
        except sqlite3.Error:
            logger.warning("checkpoint of %s failed", self.path, exc_info=True)
            return
        self.last_result = (busy, frames, done)
        self.checkpoints += 1


_checkpointers: dict[str, WalCheckpointer] = {}
_checkpointers_lock = threading.Lock()


def checkpointer_for(path: str | os.PathLike[str]) -> WalCheckpointer | None:
    """The checkpointer of the database file at ``path``, while this process has inline connections to it."""
    with _checkpointers_lock:
        return _checkpointers.get(os.path.realpath(path))


def _attach_checkpointer(connection: sqlite3.Connection) -> WalCheckpointer | None:
    """Turn off ``connection``'s automatic checkpoints and count it on its
    file's checkpointer; ``None`` for a database without a file (``:memory:``)."""
    path = next((row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main"), "")
    if not path:
        return None
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_BYTES}")
    path = os.path.realpath(path)
    with _checkpointers_lock:
        checkpointer = _checkpointers.get(path)
        if checkpointer is None:
            checkpointer = _checkpointers[path] = WalCheckpointer(path)
        checkpointer.connections += 1
    return checkpointer


def _detach_checkpointer(checkpointer: WalCheckpointer, connection: sqlite3.Connection) -> None:
    """Before ``connection`` closes: if it is the process's last inline
    connection to the file, let a running checkpoint finish and checkpoint
    what is left, with ``connection`` (the process is closing the database)."""
    with _checkpointers_lock:
        checkpointer.connections -= 1
        last = checkpointer.connections == 0
        if last and _checkpointers.get(checkpointer.path) is checkpointer:
            del _checkpointers[checkpointer.path]
    if not last:
        return
    checkpointer.wait(timeout=CHECKPOINT_WAIT_S * 10)
    try:
        if not connection.in_transaction:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error:
        logger.warning("checkpoint of %s at close failed", checkpointer.path, exc_info=True)


def _let_others_run() -> None:
    """After a write transaction's COMMIT: one turn of the loop for the other
    ready tasks (one ``sleep(0)``, no thread), so that a task writing in a
    loop does not starve them. A cancellation arriving meanwhile is delivered
    at the task's next await instead: the transaction has committed, and its
    caller must not take it for failed."""
    if not in_greenlet():
        return
    try:
        await_(asyncio.sleep(0))
    except asyncio.CancelledError as error:
        task = asyncio.current_task()
        if task is None:
            raise
        task.uncancel()
        task.cancel(*error.args)


def _writes(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(_WRITE_VERBS)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY


class InlineCursor:
    """The cursor SQLAlchemy's async adapter expects, calling sqlite3 directly.

    A statement's rows are fetched when it runs (as the aiosqlite adapter
    does), so no statement stays open between SQLAlchemy's calls."""

    server_side = False
    __slots__ = ("_adapt_connection", "_cursor", "_rows")

    def __init__(self, adapt_connection: InlineConnection) -> None:
        self._adapt_connection = adapt_connection
        self._cursor = adapt_connection._sqlite().cursor()
        self._rows: collections.deque[Any] = collections.deque()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    def execute(self, operation: str, parameters: Any = None) -> Any:
        self._adapt_connection._before(operation)
        _switch_to_loop_greenlet()
        try:
            self._cursor.execute(operation, () if parameters is None else parameters)
        except sqlite3.OperationalError as error:
            if not (_is_busy(error) and operation.startswith(_WRITE_BEGINS)):
                raise
            self._adapt_connection._wait_for_write_lock(self._cursor, operation, error)
        self._adapt_connection._after(operation)
        self._fetch_rows()
        return None

    def _fetch_rows(self) -> None:
        if self._cursor.description is not None:
            self._rows = collections.deque(self._cursor.fetchall())

    def executemany(self, operation: str, seq_of_parameters: Any) -> Any:
        self._adapt_connection._before(operation)
        _switch_to_loop_greenlet()
        self._cursor.executemany(operation, seq_of_parameters)
        return None

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        count = self.arraysize if size is None else size
        rows = self._rows
        return [rows.popleft() for _ in range(min(count, len(rows)))]

    def fetchall(self) -> Sequence[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> Iterator[Any]:
        while self._rows:
            yield self._rows.popleft()

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        return None

    def nextset(self) -> None:
        return None

    async def _async_soft_close(self) -> None:
        # Called by SQLAlchemy's async result: the rows are already in memory,
        # and the sqlite3 cursor keeps its description for the result.
        return None

    def close(self) -> None:
        self._rows.clear()
        self._cursor.close()


class InlineServerSideCursor(InlineCursor):
    """``stream()``'s cursor: rows are stepped out of SQLite as they are fetched."""

    server_side = True
    __slots__ = ()

    def _fetch_rows(self) -> None:
        return None

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        return self._cursor.fetchmany(self.arraysize if size is None else size)

    def fetchall(self) -> Sequence[Any]:
        return self._cursor.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)


class InlineConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's adapted connection over a sqlite3 connection used on the
    loop's own thread (see the module docstring for what that changes).

    ``driver_connection`` is the ``sqlite3.Connection``."""

    __slots__ = ("_checkpointer", "_closed", "_lock_wait_ms", "_strict_writes", "_write_transaction")

    def __init__(self, dbapi: Any, connection: sqlite3.Connection, *, strict_writes: bool,
                 lock_wait_ms: int) -> None:
        super().__init__(dbapi, connection)  # type: ignore[arg-type]
        self._closed = False
        self._checkpointer = _attach_checkpointer(connection)
        # Whether the open transaction began with BEGIN IMMEDIATE/EXCLUSIVE.
        self._write_transaction = False
        self._strict_writes = strict_writes
        self._lock_wait_ms = lock_wait_ms

    def _sqlite(self) -> sqlite3.Connection:
        return self._connection  # type: ignore[return-value]

    # -- statements

    def _before(self, operation: str) -> None:
        if not self._strict_writes:
            return
        if self._write_transaction and self._sqlite().in_transaction:
            return
        if _writes(operation):
            raise WriteOutsideWriteTransaction(
                "a statement that writes ran outside a write transaction (use "
                f"Database.transaction(), which queues for SQLite's write lock): {operation[:200]}"
            )

    def _after(self, operation: str) -> None:
        if operation.startswith("BEGIN"):
            self._write_transaction = operation.startswith(_WRITE_BEGINS)

    def _wait_for_write_lock(self, cursor: sqlite3.Cursor, operation: str,
                             error: sqlite3.OperationalError) -> None:
        """Retry ``operation`` (a BEGIN that takes the write lock) until it
        succeeds, yielding the loop between tries, or raise ``error`` after the
        lock wait. Outside SQLAlchemy's greenlet nothing can be awaited: raise."""
        if not in_greenlet():
            raise error
        deadline = time.monotonic() + self._lock_wait_ms / 1000
        pause = _LOCK_RETRY_FIRST_S
        while time.monotonic() < deadline:
            await_(asyncio.sleep(pause))
            pause = min(pause * 2, _LOCK_RETRY_MAX_S)
            try:
                cursor.execute(operation)
                return
            except sqlite3.OperationalError as again:
                if not _is_busy(again):
                    raise
        raise error

    def cursor(self, server_side: bool = False) -> Any:
        if server_side:
            return InlineServerSideCursor(self)
        return InlineCursor(self)

    # -- the connection

    @property
    def isolation_level(self) -> str | None:
        return self._sqlite().isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._sqlite().isolation_level = value  # type: ignore[assignment]

    def create_function(self, *args: Any, **kw: Any) -> None:
        self._sqlite().create_function(*args, **kw)

    def commit(self) -> None:
        if self._closed:
            return
        wrote, self._write_transaction = self._write_transaction, False
        # Inline, with no fsync in it: see the module docstring.
        self._sqlite().commit()
        if wrote:
            if self._checkpointer is not None:
                self._checkpointer.after_commit(self._sqlite())
            _let_others_run()

    def rollback(self) -> None:
        if not self._closed:
            self._write_transaction = False
            self._sqlite().rollback()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            checkpointer, self._checkpointer = self._checkpointer, None
            if checkpointer is not None:
                _detach_checkpointer(checkpointer, self._sqlite())
            self._sqlite().close()

    def terminate(self) -> None:
        self.close()

    async def _terminate_graceful_close(self) -> None:
        self.close()

    def _terminate_force_close(self) -> None:
        self.close()


class InlineDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module handed to SQLAlchemy (``create_async_engine(module=...)``):
    aiosqlite's, except that ``connect`` opens a sqlite3 connection on the
    calling (loop) thread, with a busy timeout of 0."""

    def __init__(self, *, strict_writes: bool, lock_wait_ms: int) -> None:
        super().__init__(aiosqlite, sqlite3)
        self.strict_writes = strict_writes
        self.lock_wait_ms = lock_wait_ms

    def connect(self, *arg: Any, **kw: Any) -> InlineConnection:  # type: ignore[override]
        kw.pop("async_creator_fn", None)
        kw["timeout"] = 0
        kw["check_same_thread"] = False
        connection = sqlite3.connect(*arg, **kw)
        return InlineConnection(self, connection, strict_writes=self.strict_writes,
                                lock_wait_ms=self.lock_wait_ms)
