"""federationapi_joined_hosts: the joined members of each room (their
``m.room.member`` event in the current state and their server), kept from the
output log's state annotations; who a room's events and EDUs go to."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Column, Index, Table, Text, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from common.storage import Database
from federationapi.storage.tables import METADATA

joined_hosts = Table(
    "federationapi_joined_hosts",
    METADATA,
    Column("room_id", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("server_name", Text, nullable=False),
)
# The servers in a room (``select_servers_in_room``) from the index alone.
Index("federationapi_joined_hosts_room_server_idx", joined_hosts.c.room_id, joined_hosts.c.server_name)



def _build_insert(dialect_name: str) -> Insert:
    insert = postgresql.insert(joined_hosts) if dialect_name == "postgresql" else sqlite.insert(joined_hosts)
    return insert.on_conflict_do_nothing(index_elements=["room_id", "event_id"])


# Built once: every member event (and every event our users send) runs them,
# and building a statement cost more CPU than running it.
_INSERTS = {name: _build_insert(name) for name in ("sqlite", "postgresql")}
_SERVERS_IN_ROOM = select(joined_hosts.c.server_name).where(
    joined_hosts.c.room_id == bindparam("b_room_id")).distinct()


class JoinedHostsTable:
    async def insert(self, db: Database, conn: AsyncConnection,
                     rows: Sequence[tuple[str, str, str, str]]) -> None:
        """Rows of (room ID, event ID, user ID, server name)."""
        if not rows:
            return
        values = [{"room_id": r, "event_id": e, "user_id": u, "server_name": s} for r, e, u, s in rows]
        await conn.execute(_INSERTS[db.dialect_name], values)

    async def delete_events(self, conn: AsyncConnection, room_id: str, event_ids: Iterable[str]) -> None:
        ids = list(event_ids)
        if ids:
            await conn.execute(delete(joined_hosts).where(joined_hosts.c.room_id == room_id,
                                                          joined_hosts.c.event_id.in_(ids)))

    async def delete_room(self, conn: AsyncConnection, room_id: str) -> None:
        await conn.execute(delete(joined_hosts).where(joined_hosts.c.room_id == room_id))

    async def select_servers_in_room(self, conn: AsyncConnection, room_id: str) -> set[str]:
        return set((await conn.execute(_SERVERS_IN_ROOM, {"b_room_id": room_id})).scalars())

    async def select_servers_sharing_rooms_with(self, conn: AsyncConnection, user_id: str) -> set[str]:
        """The servers of everyone joined to a room ``user_id`` is joined to."""
        rooms = select(joined_hosts.c.room_id).where(joined_hosts.c.user_id == user_id).scalar_subquery()
        query = select(joined_hosts.c.server_name).where(joined_hosts.c.room_id.in_(rooms)).distinct()
        return set((await conn.execute(query)).scalars())
