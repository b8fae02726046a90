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


def intern_pg(table: Table, name_column: str, nid_column: str) -> str:
    """PostgreSQL: interns the names ``$1`` (text[]) and answers (name, NID)
    for each, in one statement (was an insert and a select): new names
    inserted in name order (two transactions interning the same new names
    then wait for each other instead of deadlocking), the others read. A
    name another transaction inserted and committed while this statement
    waited for it is in neither part: the caller reads those again."""
    return f"""
WITH inserted AS (
    INSERT INTO {table.name} ({name_column})
    SELECT DISTINCT wanted.name FROM unnest($1::TEXT[]) AS wanted(name) ORDER BY wanted.name
    ON CONFLICT ({name_column}) DO NOTHING
    RETURNING {name_column}, {nid_column}
)
SELECT {name_column}, {nid_column} FROM inserted
UNION ALL
SELECT known.{name_column}, known.{nid_column} FROM {table.name} AS known
WHERE known.{name_column} = ANY($1::TEXT[])
"""
