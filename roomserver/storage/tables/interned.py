"""``roomserver_event_types`` and ``roomserver_event_state_keys``: event types
and state keys interned to numeric IDs, so state maps and snapshot entries are
pairs of small integers instead of strings."""

from __future__ import annotations

from sqlalchemy import Column, Table, Text

from roomserver.storage.tables.base import NID, metadata

event_types = Table(
    "roomserver_event_types",
    metadata,
    Column("type_nid", NID, primary_key=True, autoincrement=True),
    Column("event_type", Text, nullable=False, unique=True),
    sqlite_autoincrement=True,
)

event_state_keys = Table(
    "roomserver_event_state_keys",
    metadata,
    Column("state_key_nid", NID, primary_key=True, autoincrement=True),
    Column("state_key", Text, nullable=False, unique=True),
    sqlite_autoincrement=True,
)
