"""Event relationships (threads, edits, references, annotations) and event timestamps.

Revision ID: syncapi_0005
Revises: syncapi_0004
Create Date: 2026-11-26

Schema changelog (syncapi):
  syncapi_0005: syncapi_relations (one row per event with an m.relates_to rel_type: the
  parent, the relation type, the child's type, sender and position; a redacted child's row
  is deleted); syncapi_events.origin_server_ts with a (room_id, origin_server_ts) index for
  /timestamp_to_event. Both are filled from the stored events.
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "syncapi_0005"
down_revision = "syncapi_0004"
branch_labels = None
depends_on = None

BATCH = 1000


def _relation(pdu: Any) -> tuple[str, str] | None:
    content = pdu.get("content") if isinstance(pdu, dict) else None
    relates_to = content.get("m.relates_to") if isinstance(content, dict) else None
    if not isinstance(relates_to, dict):
        return None
    parent, rel_type = relates_to.get("event_id"), relates_to.get("rel_type")
    if isinstance(parent, str) and isinstance(rel_type, str):
        return parent, rel_type
    return None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE syncapi_relations (
            event_id TEXT NOT NULL PRIMARY KEY,
            room_id TEXT NOT NULL,
            relates_to TEXT NOT NULL,
            rel_type TEXT NOT NULL,
            type TEXT NOT NULL,
            sender TEXT NOT NULL,
            depth BIGINT NOT NULL,
            stream_pos BIGINT NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX syncapi_relations_parent ON syncapi_relations "
               "(relates_to, depth, stream_pos)")
    op.execute("CREATE INDEX syncapi_relations_room_type ON syncapi_relations "
               "(room_id, rel_type, stream_pos)")
    op.execute("ALTER TABLE syncapi_events ADD COLUMN origin_server_ts BIGINT")
    op.execute("CREATE INDEX syncapi_events_room_ts ON syncapi_events (room_id, origin_server_ts)")

    # Fill both from the events already stored (in stream order, in batches).
    bind = op.get_bind()
    after = -1
    while True:
        rows = bind.execute(sa.text(
            "SELECT stream_pos, event_id, room_id, type, sender, depth, event_json, state_only "
            "FROM syncapi_events WHERE stream_pos > :after ORDER BY stream_pos LIMIT :batch"),
            {"after": after, "batch": BATCH}).fetchall()
        if not rows:
            break
        timestamps = []
        relations = []
        for stream_pos, event_id, room_id, event_type, sender, depth, event_json, state_only in rows:
            after = stream_pos
            try:
                pdu = json.loads(event_json)
            except ValueError:
                continue
            ts = pdu.get("origin_server_ts") if isinstance(pdu, dict) else None
            if isinstance(ts, int):
                timestamps.append({"ts": ts, "pos": stream_pos})
            found = _relation(pdu)
            if found is not None and not state_only:
                relations.append({"event_id": event_id, "room_id": room_id, "relates_to": found[0],
                                  "rel_type": found[1], "type": event_type, "sender": sender,
                                  "depth": depth, "stream_pos": stream_pos})
        if timestamps:
            bind.execute(sa.text("UPDATE syncapi_events SET origin_server_ts = :ts WHERE stream_pos = :pos"),
                         timestamps)
        if relations:
            bind.execute(sa.text(
                "INSERT INTO syncapi_relations (event_id, room_id, relates_to, rel_type, type, sender, "
                "depth, stream_pos) VALUES (:event_id, :room_id, :relates_to, :rel_type, :type, :sender, "
                ":depth, :stream_pos)"), relations)


def downgrade() -> None:
    op.execute("DROP INDEX syncapi_events_room_ts")
    op.execute("ALTER TABLE syncapi_events DROP COLUMN origin_server_ts")
    op.execute("DROP TABLE syncapi_relations")
