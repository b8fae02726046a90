"""``roomserver_room_aliases``: the room alias directory. The room server is
its authority (the client API and the federation API both ask here); the
creator may delete an alias without power in the room."""

from __future__ import annotations

from sqlalchemy import Column, Index, Table, Text

from roomserver.storage.tables.base import metadata

room_aliases = Table(
    "roomserver_room_aliases",
    metadata,
    Column("alias", Text, primary_key=True),
    Column("room_id", Text, nullable=False),
    Column("creator", Text, nullable=False),
)
Index("roomserver_room_aliases_room", room_aliases.c.room_id)
