"""``roomserver_membership``: each user's membership of each room in the
room's current state, kept up to date as the current state changes, so
membership queries do not load state snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Table, Text, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from common.prebuilt import PrebuiltStatement
from roomserver.storage.tables.base import metadata
from roomserver.storage.tables.interned import event_state_keys

membership = Table(
    "roomserver_membership",
    metadata,
    Column("room_nid", BigInteger, primary_key=True, autoincrement=False),
    # The member event's state key (the target user ID), interned.
    Column("target_nid", BigInteger, primary_key=True, autoincrement=False),
    Column("membership", Text, nullable=False),
    Column("event_nid", BigInteger, nullable=False),
)
Index("roomserver_membership_target", membership.c.target_nid, membership.c.membership)


async def select_server_joined(conn: AsyncConnection, room_nid: int, server_name: str) -> bool:
    """Whether a user of ``server_name`` is joined to the room: stops at the
    first one, so a room of local users costs a row, not its every member."""
    found = await conn.scalar(
        select(membership.c.target_nid)
        .join(event_state_keys, event_state_keys.c.state_key_nid == membership.c.target_nid)
        .where(membership.c.room_nid == room_nid, membership.c.membership == "join",
               event_state_keys.c.state_key.endswith(":" + server_name, autoescape=True))
        .limit(1))
    return found is not None


def _build_upsert(dialect_name: str) -> Insert:
    insert = postgresql.insert(membership) if dialect_name == "postgresql" else sqlite.insert(membership)
    return insert.on_conflict_do_update(index_elements=["room_nid", "target_nid"], set_={
        "membership": insert.excluded.membership, "event_nid": insert.excluded.event_nid})


# Built once: every member event writes it, and building it cost more CPU than running it.
# Prebuilt: on the inline SQLite driver and asyncpg without SQLAlchemy's execution path.
_UPSERTS = {name: PrebuiltStatement(_build_upsert(name), ("room_nid", "target_nid", "membership", "event_nid"))
            for name in ("sqlite", "postgresql")}


async def upsert_memberships(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of room_nid, target_nid, membership, event_nid: inserted or, for
    a (room, target) known already, its membership and event replaced."""
    if rows:
        await _UPSERTS[conn.dialect.name].execute_many(conn, rows)
