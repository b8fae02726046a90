"""``roomserver_membership``: each user's membership of each room in the
room's current state, kept up to date as the current state changes, so
membership queries do not load state snapshots."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Table, Text

from roomserver.storage.tables.base import metadata

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
