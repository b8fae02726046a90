"""syncapi_invites: invites to local users with the stripped state a client shows, and their
knocks made through another server with the knock_room_state that server answered."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Index, Row, Table, Text, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from common.prebuilt import PrebuiltStatement
from syncapi.storage.tables import metadata

invites = Table(
    "syncapi_invites", metadata,
    Column("event_id", Text, primary_key=True),
    Column("room_id", Text, nullable=False),
    Column("target_user_id", Text, nullable=False),
    Column("room_version", Text, nullable=False),
    Column("event_json", Text, nullable=False),
    Column("invite_state_json", Text, nullable=False),
    Column("stream_pos", BigInteger, nullable=False),
    Column("retired_pos", BigInteger),
    Column("retired_membership", Text),
    Column("retired_by_event_id", Text),
    Index("syncapi_invites_target", "target_user_id", "stream_pos"),
)


@dataclass(frozen=True, slots=True)
class StoredInvite:
    event_id: str
    room_id: str
    target_user_id: str
    room_version: str
    event_json: str
    invite_state_json: str
    stream_pos: int
    retired_pos: int | None
    retired_membership: str | None
    retired_by_event_id: str | None

    @property
    def is_knock(self) -> bool:
        """Whether this is the user's knock rather than an invite."""
        if '"knock"' not in self.event_json:
            return False
        content = json.loads(self.event_json).get("content")
        return isinstance(content, dict) and content.get("membership") == "knock"

    @classmethod
    def from_row(cls, row: Row[tuple[object, ...]]) -> StoredInvite:
        m = row._mapping
        return cls(m["event_id"], m["room_id"], m["target_user_id"], m["room_version"],
                   m["event_json"], m["invite_state_json"], int(m["stream_pos"]),
                   None if m["retired_pos"] is None else int(m["retired_pos"]),
                   m["retired_membership"], m["retired_by_event_id"])


async def select_invite(conn: AsyncConnection, event_id: str) -> StoredInvite | None:
    row = (await conn.execute(select(invites).where(invites.c.event_id == event_id))).first()
    return None if row is None else StoredInvite.from_row(row)


async def insert_invite(conn: AsyncConnection, invite: StoredInvite) -> None:
    await conn.execute(invites.insert().values(
        event_id=invite.event_id, room_id=invite.room_id, target_user_id=invite.target_user_id,
        room_version=invite.room_version, event_json=invite.event_json,
        invite_state_json=invite.invite_state_json, stream_pos=invite.stream_pos))


async def update_invite_state(conn: AsyncConnection, event_id: str, invite_state_json: str) -> None:
    await conn.execute(update(invites).where(invites.c.event_id == event_id)
                       .values(invite_state_json=invite_state_json))


# Built once and run without SQLAlchemy's per-statement machinery
# (common/prebuilt.py): every membership change of the room's own events runs
# it (a join ends a pending invite). The parameter names are not column
# names, which an UPDATE would take as values to set.
_RETIRE_INVITES = PrebuiltStatement(
    update(invites).where(invites.c.room_id == bindparam("b_room_id"),
                          invites.c.target_user_id == bindparam("b_target_user_id"),
                          invites.c.retired_pos.is_(None))
    .values(retired_pos=bindparam("b_position", type_=BigInteger), retired_membership=bindparam("b_membership"),
            retired_by_event_id=bindparam("b_retired_by_event_id"))
    .returning(invites.c.event_id))


async def retire_invites(conn: AsyncConnection, room_id: str, target_user_id: str, *, position: int,
                         membership: str, retired_by_event_id: str, event_id: str | None = None
                         ) -> int:
    """Retires the user's active invites to the room (or the one given); how many."""
    if not event_id:
        return len(await _RETIRE_INVITES.rows(conn, {
            "b_room_id": room_id, "b_target_user_id": target_user_id, "b_position": position,
            "b_membership": membership, "b_retired_by_event_id": retired_by_event_id}))
    c = invites.c
    stmt = update(invites).where(c.room_id == room_id, c.target_user_id == target_user_id,
                                 c.retired_pos.is_(None))
    if event_id:
        stmt = stmt.where(c.event_id == event_id)
    result = await conn.execute(stmt.values(retired_pos=position, retired_membership=membership,
                                            retired_by_event_id=retired_by_event_id))
    return int(getattr(result, "rowcount", 0) or 0)


async def select_active_invites(conn: AsyncConnection, user_id: str, *, after: int, upto: int
                                ) -> list[StoredInvite]:
    """Invites not retired by ``upto`` that arrived in ``(after, upto]``."""
    c = invites.c
    stmt = select(invites).where(
        c.target_user_id == user_id, c.stream_pos > after, c.stream_pos <= upto,
        (c.retired_pos.is_(None)) | (c.retired_pos > upto),
    ).order_by(c.stream_pos)
    latest: dict[str, StoredInvite] = {}
    for row in await conn.execute(stmt):
        invite = StoredInvite.from_row(row)
        latest[invite.room_id] = invite
    # A knock through another server is kept here too (select_active_knocks).
    return [invite for invite in latest.values() if not invite.is_knock]


async def select_active_knocks(conn: AsyncConnection, user_id: str, *, after: int, upto: int
                               ) -> list[StoredInvite]:
    """The user's knocks made through another server (kept here with their
    ``knock_room_state`` as the invite state) that arrived in ``(after, upto]``
    and are in force at ``upto``: not retired, and no invite or knock to the
    room came after them."""
    c = invites.c
    stmt = select(invites).where(c.target_user_id == user_id, c.stream_pos <= upto).order_by(c.stream_pos)
    latest: dict[str, StoredInvite] = {}
    for row in await conn.execute(stmt):
        invite = StoredInvite.from_row(row)
        latest[invite.room_id] = invite
    return [k for k in latest.values() if k.is_knock and k.stream_pos > after
            and (k.retired_pos is None or k.retired_pos > upto)]


async def select_retired_invites(conn: AsyncConnection, user_id: str, *, after: int, upto: int
                                 ) -> list[StoredInvite]:
    """Invites retired in ``(after, upto]``."""
    c = invites.c
    stmt = select(invites).where(c.target_user_id == user_id, c.retired_pos > after,
                                 c.retired_pos <= upto)
    return [StoredInvite.from_row(row) for row in await conn.execute(stmt)]
