"""The sync API's read model: stream-ordered timeline, current state and its
history, invites, filters, the consumer's per-room position.

Revision ID: syncapi_0001
Revises:
Create Date: 2026-11-26

Schema changelog (syncapi):
  syncapi_0001: syncapi_stream_position, syncapi_events, syncapi_current_room_state,
                syncapi_state_history, syncapi_invites, syncapi_filters, syncapi_room_positions.
"""

from alembic import op

revision = "syncapi_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One global counter: every write that a /sync must notice takes the next
    # position under the row lock, so positions commit in order (no reader can
    # see position 6 while 5 is still uncommitted).
    op.execute(
        """
        CREATE TABLE syncapi_stream_position (
            stream_name TEXT NOT NULL PRIMARY KEY,
            position BIGINT NOT NULL
        )
        """
    )
    op.execute("INSERT INTO syncapi_stream_position (stream_name, position) VALUES ('global', 0)")
    op.execute(
        """
        CREATE TABLE syncapi_events (
            stream_pos BIGINT NOT NULL PRIMARY KEY,
            room_id TEXT NOT NULL,
            event_id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            sender TEXT NOT NULL,
            state_key TEXT,
            -- The topological position: events page by (depth, stream_pos).
            depth BIGINT NOT NULL,
            room_version TEXT NOT NULL,
            -- The PDU's canonical JSON (the redacted form once redacted).
            event_json TEXT NOT NULL,
            -- What the sync API adds to `unsigned` (prev_content, redacted_because...).
            unsigned_json TEXT,
            history_visibility TEXT NOT NULL,
            -- Backfilled: in the room's past, never in a /sync timeline.
            historical BOOLEAN NOT NULL,
            -- Known only as state (e.g. from state resolution), not a timeline event.
            state_only BOOLEAN NOT NULL,
            contains_url BOOLEAN NOT NULL,
            txn_device_id TEXT,
            txn_id TEXT
        )
        """
    )
    op.execute("CREATE INDEX syncapi_events_room_stream ON syncapi_events (room_id, stream_pos)")
    op.execute("CREATE INDEX syncapi_events_room_topology ON syncapi_events (room_id, depth, stream_pos)")
    op.execute(
        """
        CREATE TABLE syncapi_current_room_state (
            room_id TEXT NOT NULL,
            type TEXT NOT NULL,
            state_key TEXT NOT NULL,
            event_id TEXT NOT NULL,
            -- content.membership of m.room.member events, else NULL.
            membership TEXT,
            -- The stream position at which this entry entered the state.
            added_pos BIGINT NOT NULL,
            PRIMARY KEY (room_id, type, state_key)
        )
        """
    )
    op.execute(
        "CREATE INDEX syncapi_current_room_state_user ON syncapi_current_room_state "
        "(state_key, type, membership)"
    )
    op.execute(
        """
        CREATE TABLE syncapi_state_history (
            room_id TEXT NOT NULL,
            type TEXT NOT NULL,
            state_key TEXT NOT NULL,
            event_id TEXT NOT NULL,
            membership TEXT,
            added_pos BIGINT NOT NULL,
            removed_pos BIGINT NOT NULL,
            PRIMARY KEY (room_id, type, state_key, added_pos)
        )
        """
    )
    op.execute("CREATE INDEX syncapi_state_history_removed ON syncapi_state_history (room_id, removed_pos)")
    op.execute(
        """
        CREATE TABLE syncapi_invites (
            event_id TEXT NOT NULL PRIMARY KEY,
            room_id TEXT NOT NULL,
            target_user_id TEXT NOT NULL,
            room_version TEXT NOT NULL,
            event_json TEXT NOT NULL,
            -- JSON array of stripped state events.
            invite_state_json TEXT NOT NULL,
            stream_pos BIGINT NOT NULL,
            retired_pos BIGINT,
            retired_membership TEXT,
            retired_by_event_id TEXT
        )
        """
    )
    op.execute("CREATE INDEX syncapi_invites_target ON syncapi_invites (target_user_id, stream_pos)")
    op.execute(
        """
        CREATE TABLE syncapi_filters (
            user_id TEXT NOT NULL,
            filter_id BIGINT NOT NULL,
            filter_json TEXT NOT NULL,
            PRIMARY KEY (user_id, filter_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE syncapi_room_positions (
            room_id TEXT NOT NULL PRIMARY KEY,
            last_event_id TEXT NOT NULL,
            room_stream_position BIGINT NOT NULL
        )
        """
    )


def downgrade() -> None:
    for table in ("syncapi_room_positions", "syncapi_filters", "syncapi_invites", "syncapi_state_history",
                  "syncapi_current_room_state", "syncapi_events", "syncapi_stream_position"):
        op.execute(f"DROP TABLE {table}")
