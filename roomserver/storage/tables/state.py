"""State snapshots, never a full copy of the state per event.

``roomserver_state_snapshots`` holds one row per distinct state a room has
been in. A snapshot is either a full base (``delta_depth`` 0: its entries are
the whole state) or a delta against ``parent_nid`` (its entries are the
(type, state key) pairs that changed; ``event_nid`` NULL means the pair left
the state). A new base is written after a bounded number of deltas
(``storage.database.max_delta_depth``), so loading a snapshot reads a
bounded chain (found with one recursive query). Events that do not change the state
share their parent's snapshot.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, Table

from roomserver.storage.tables.base import NID, metadata

state_snapshots = Table(
    "roomserver_state_snapshots",
    metadata,
    Column("snapshot_nid", NID, primary_key=True, autoincrement=True),
    Column("room_nid", BigInteger, nullable=False),
    Column("parent_nid", BigInteger, nullable=True),
    Column("delta_depth", Integer, nullable=False),
    sqlite_autoincrement=True,
)

state_entries = Table(
    "roomserver_state_entries",
    metadata,
    Column("snapshot_nid", BigInteger, primary_key=True, autoincrement=False),
    Column("type_nid", BigInteger, primary_key=True, autoincrement=False),
    Column("state_key_nid", BigInteger, primary_key=True, autoincrement=False),
    # NULL: removed relative to the parent snapshot.
    Column("event_nid", BigInteger, nullable=True),
)

#: PostgreSQL: a snapshot's row and its entries in one statement (was two);
#: answers its NID. Parameters: room_nid, parent_nid, delta_depth, then the
#: entries' type_nids, state_key_nids and event_nids as arrays.
INSERT_SNAPSHOT_PG = f"""
WITH snapshot AS (
    INSERT INTO {state_snapshots.name} (room_nid, parent_nid, delta_depth)
    VALUES ($1::BIGINT, $2::BIGINT, $3::INTEGER)
    RETURNING snapshot_nid
), entries AS (
    INSERT INTO {state_entries.name} (snapshot_nid, type_nid, state_key_nid, event_nid)
    SELECT snapshot.snapshot_nid, entry.type_nid, entry.state_key_nid, entry.event_nid
    FROM snapshot, unnest($4::BIGINT[], $5::BIGINT[], $6::BIGINT[]) AS entry(type_nid, state_key_nid, event_nid)
)
SELECT snapshot_nid FROM snapshot
"""
INSERT_SNAPSHOT_PG_NAMES = ("room_nid", "parent_nid", "delta_depth", "type_nids", "state_key_nids", "event_nids")
