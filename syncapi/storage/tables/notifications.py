"""syncapi_notifications: one row per local user and event their push rules
said notifies them (the ``notify`` action), with the rule's actions.

A row is unread while its stream position is past the user's latest
``m.read``/``m.read.private`` receipt in the room (for its thread, or an
unthreaded one): counts and the ``read`` flag are worked out against the
receipts when read, so a receipt needs no write here."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    Select,
    Table,
    Text,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from common.prebuilt import PrebuiltStatement
from common.sqlite_connection import InlineCursor
from syncapi.storage.tables import metadata
from syncapi.storage.tables.account_data import account_data
from syncapi.storage.tables.current_state import MEMBER, current_room_state
from syncapi.storage.tables.events import events
from syncapi.storage.tables.receipts import READ_PRIVATE, receipts

READ = "m.read"
# The thread ID of the main timeline in receipts.
MAIN_THREAD = "main"

notifications = Table(
    "syncapi_notifications", metadata,
    Column("user_id", Text, primary_key=True),
    Column("stream_pos", BigInteger, primary_key=True, autoincrement=False),
    Column("room_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    # "" for the main timeline, else the thread root's event ID.
    Column("thread_id", Text, nullable=False),
    Column("actions_json", Text, nullable=False),
    Column("highlight", Boolean, nullable=False),
    Column("ts", BigInteger, nullable=False),
    # Unread counts per room and thread read this index alone (syncapi_0010).
    Index("syncapi_notifications_room", "user_id", "room_id", "thread_id", "stream_pos", "highlight"),
)


class StoredNotification(NamedTuple):
    """A row of the table, a tuple in the table's column order: a big room's
    message makes one per local member, so building one costs a tuple, not
    a dataclass's per-field setattr, and storing it hands the tuple to the
    driver as it is (``insert_notifications``)."""

    user_id: str
    stream_pos: int
    room_id: str
    event_id: str
    thread_id: str
    actions_json: str
    highlight: bool
    ts: int

    def values(self) -> dict[str, Any]:
        return self._asdict()


_COLUMNS = (notifications.c.user_id, notifications.c.stream_pos, notifications.c.room_id,
            notifications.c.event_id, notifications.c.thread_id, notifications.c.actions_json,
            notifications.c.highlight, notifications.c.ts)


def _notification(row: Any) -> StoredNotification:
    return StoredNotification(row[0], int(row[1]), row[2], row[3], row[4], row[5], bool(row[6]), int(row[7]))


@dataclass(frozen=True, slots=True)
class ReadUpTo:
    """Where the user's read receipts in a room stand (stream positions;
    0: none). ``unthreaded`` covers every thread."""

    unthreaded: int = 0
    by_thread: tuple[tuple[str, int], ...] = ()

    def position(self, thread_id: str) -> int:
        """Up to where a notification of ``thread_id`` ("" for main) is read."""
        wanted = thread_id or MAIN_THREAD
        threaded = max((pos for thread, pos in self.by_thread if thread == wanted), default=0)
        return max(self.unthreaded, threaded)

    def is_read(self, notification: StoredNotification) -> bool:
        return notification.stream_pos <= self.position(notification.thread_id)


async def select_read_up_to(conn: AsyncConnection, user_id: str, room_ids: Sequence[str]) -> dict[str, ReadUpTo]:
    """The user's read receipts (public or private) in the rooms, as stream
    positions of the events they point at (receipts for events this read
    model does not have are left out)."""
    if not room_ids:
        return {}
    r = receipts.c
    stmt = (select(r.room_id, r.thread_id, events.c.stream_pos)
            .select_from(receipts.join(events, events.c.event_id == r.event_id))
            .where(r.user_id == user_id, r.room_id.in_(list(room_ids)), r.receipt_type.in_([READ, READ_PRIVATE])))
    unthreaded: dict[str, int] = {}
    threaded: dict[str, dict[str, int]] = {}
    for room_id, thread_id, stream_pos in await conn.execute(stmt):
        if thread_id:
            by_thread = threaded.setdefault(room_id, {})
            by_thread[thread_id] = max(by_thread.get(thread_id, 0), int(stream_pos))
        else:
            unthreaded[room_id] = max(unthreaded.get(room_id, 0), int(stream_pos))
    return {room_id: ReadUpTo(unthreaded.get(room_id, 0), tuple(sorted(threaded.get(room_id, {}).items())))
            for room_id in set(unthreaded) | set(threaded)}


def build_unread_counts(rooms: Any) -> Select[Any]:
    """The unread counts statement (see ``select_unread_counts``) for the
    rooms ``rooms`` names: an expanding bound parameter, or a subquery."""
    n = notifications.c
    r = receipts.c
    # The user's read receipts in the rooms, the latest per room and thread,
    # read once (MATERIALIZED) and not for every notification: each
    # notification is then compared with a handful of rows (a user with a
    # thousand unread notifications made the per-row receipt look-ups take
    # milliseconds a /sync).
    read_positions = (select(r.room_id.label("room_id"), r.thread_id.label("thread_id"),
                             func.max(events.c.stream_pos).label("pos"))
                      .select_from(receipts.join(events, events.c.event_id == r.event_id))
                      .where(r.user_id == bindparam("b_user_id"),
                             r.room_id.in_(rooms),
                             # Named (a prebuilt statement takes no anonymous list).
                             r.receipt_type.in_(bindparam("b_read_receipt_types", [READ, READ_PRIVATE],
                                                          expanding=True)))
                      .group_by(r.room_id, r.thread_id)
                      .cte("read_positions").prefix_with("MATERIALIZED"))
    p = read_positions.c
    receipt_thread = case((n.thread_id == "", literal(MAIN_THREAD)), else_=n.thread_id)
    read_up_to = (select(func.max(p.pos))
                  .where(p.room_id == n.room_id, or_(p.thread_id == "", p.thread_id == receipt_thread))
                  .correlate(notifications).scalar_subquery())
    return (select(n.room_id, n.thread_id, func.count(),
                   func.sum(case((n.highlight, literal(1, Integer)), else_=literal(0, Integer))))
            .where(n.user_id == bindparam("b_user_id"), n.room_id.in_(rooms),
                   n.stream_pos > func.coalesce(read_up_to, 0))
            .group_by(n.room_id, n.thread_id))


# Built once: every /sync with news runs it, and building it took more CPU
# than SQLite takes to run it.
_UNREAD_COUNTS = build_unread_counts(bindparam("b_room_ids", expanding=True))


async def select_unread_counts(conn: AsyncConnection, user_id: str, room_ids: Sequence[str]
                               ) -> list[tuple[str, str, int, int]]:
    """(room ID, thread ID, notifications, highlights) of the user's unread
    notifications in the rooms, in one statement: a notification is unread
    when its position is past every read receipt (public or private) of the
    user in its room that is unthreaded or for its thread ("main" for the
    main timeline)."""
    if not room_ids:
        return []
    rows = await conn.execute(_UNREAD_COUNTS, {"b_user_id": user_id, "b_room_ids": list(room_ids)})
    return [(str(row[0]), str(row[1]), int(row[2]), int(row[3] or 0)) for row in rows]


def _build_insert(dialect_name: str) -> Insert:
    insert = postgresql.insert(notifications) if dialect_name == "postgresql" else sqlite.insert(notifications)
    return insert.on_conflict_do_nothing(index_elements=["user_id", "stream_pos"])


class _RowsInsert(PrebuiltStatement):
    """The SQLite INSERT, given rows as tuples in ``StoredNotification``'s
    field order: on the inline driver they go to sqlite3's executemany as
    they are (no dict per row, no SQLAlchemy parameter processing per row:
    ~5 ms of Python for a 1,000-member room's message)."""

    __slots__ = ("_order",)

    def __init__(self, statement: Insert) -> None:
        super().__init__(statement, StoredNotification._fields)
        # None: the compiled statement's parameters are in the fields' order.
        self._order: tuple[int, ...] | None = None

    async def insert_rows(self, conn: AsyncConnection, rows: Sequence[StoredNotification]) -> bool:
        """Runs the statement inline; False (nothing done) on another driver."""
        inline = self._inline_connection(conn)
        if inline is None:
            return False
        sql, names = self._compiled(conn.dialect)
        if names != StoredNotification._fields and self._order is None:
            self._order = tuple(StoredNotification._fields.index(name) for name in names)
        order = self._order
        params: Sequence[Sequence[Any]] = (rows if order is None
                                           else [tuple(row[i] for i in order) for row in rows])
        cursor = InlineCursor(inline)
        try:
            cursor.executemany(sql, params)
        except sqlite3.Error as error:
            # Raised as SQLAlchemy raises it on the other drivers (IntegrityError, ...).
            raise DBAPIError.instance(sql, params, error, sqlite3.Error, dialect=conn.dialect) from error
        finally:
            cursor.close()
        return True


_INSERTS = {name: _build_insert(name) for name in ("sqlite", "postgresql")}
_SQLITE_ROWS_INSERT = _RowsInsert(_INSERTS["sqlite"])


async def insert_notifications(conn: AsyncConnection, rows: Sequence[StoredNotification]) -> None:
    """Stores the rows; a row already stored (an entry applied again) is left
    as it is. One executemany: on the inline SQLite driver the tuples
    themselves, elsewhere through SQLAlchemy (PostgreSQL batches them)."""
    if not rows:
        return
    if conn.dialect.name == "sqlite" and await _SQLITE_ROWS_INSERT.insert_rows(conn, rows):
        return
    await conn.execute(_INSERTS[conn.dialect.name], [row._asdict() for row in rows])


async def select_page(conn: AsyncConnection, user_id: str, *, before: int | None, limit: int,
                      only_highlight: bool) -> list[StoredNotification]:
    """The user's notifications, newest first, before ``before`` (a stream position)."""
    n = notifications.c
    stmt = select(*_COLUMNS).where(n.user_id == user_id)
    if before is not None:
        stmt = stmt.where(n.stream_pos < before)
    if only_highlight:
        stmt = stmt.where(n.highlight)
    stmt = stmt.order_by(n.stream_pos.desc()).limit(limit)
    return [_notification(row) for row in await conn.execute(stmt)]


async def select_global_account_data(conn: AsyncConnection, user_ids: Sequence[str],
                                     data_type: str) -> dict[str, str]:
    """user ID -> the content of their global account data of ``data_type``
    (for the push rules of a room's members, in one statement)."""
    if not user_ids:
        return {}
    t = account_data.c
    stmt = select(t.user_id, t.content_json).where(t.user_id.in_(list(user_ids)), t.room_id == "",
                                                   t.type == data_type)
    return {str(row[0]): str(row[1]) for row in await conn.execute(stmt)}


# Built once: every join into a kept room reads the joiner's rules and ignored users.
_GLOBAL_ACCOUNT_DATA_OF_TYPES = select(account_data.c.user_id, account_data.c.type, account_data.c.content_json).where(
    account_data.c.user_id.in_(bindparam("b_user_ids", expanding=True)), account_data.c.room_id == "",
    account_data.c.type.in_(bindparam("b_types", expanding=True)))
_GLOBAL_ACCOUNT_DATA_OF_TYPES_PREBUILT = PrebuiltStatement(_GLOBAL_ACCOUNT_DATA_OF_TYPES)


async def select_global_account_data_of_types(conn: AsyncConnection, user_ids: Sequence[str],
                                              data_types: Sequence[str]) -> dict[tuple[str, str], str]:
    """(user ID, type) -> the content of their global account data of each
    of ``data_types``, in one statement (at most 500 users)."""
    if not user_ids or not data_types:
        return {}
    rows = await _GLOBAL_ACCOUNT_DATA_OF_TYPES_PREBUILT.rows(conn, {"b_user_ids": list(user_ids),
                                                                   "b_types": list(data_types)})
    return {(str(row[0]), str(row[1])): str(row[2]) for row in rows}


async def select_local_joined_members(conn: AsyncConnection, room_id: str, server_name: str
                                      ) -> dict[str, str]:
    """The room's joined users of this server -> their membership event's ID
    (the rows of other servers' users stay in the database)."""
    c = current_room_state.c
    stmt = select(c.state_key, c.event_id).where(c.room_id == room_id, c.type == MEMBER, c.membership == "join",
                                                 c.state_key.like("%:" + server_name))
    return {str(row[0]): str(row[1]) for row in await conn.execute(stmt)
            if str(row[0]).endswith(":" + server_name)}
