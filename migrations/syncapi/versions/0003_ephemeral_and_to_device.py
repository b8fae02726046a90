"""Receipts (and read markers), presence and to-device inboxes, each a
stream with its own position.

Revision ID: syncapi_0003
Revises: syncapi_0002
Create Date: 2026-11-26

Schema changelog (syncapi):
  syncapi_0003: syncapi_receipts, syncapi_presence, syncapi_send_to_device; stream counters
                'receipt', 'presence' and 'to_device' in syncapi_stream_position.
"""

from alembic import op

revision = "syncapi_0003"
down_revision = "syncapi_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each stream has its own counter (a /sync token carries one position
    # per stream); taking a position locks its row until commit, as for the
    # room-event stream, so positions become visible in order.
    op.execute(
        "INSERT INTO syncapi_stream_position (stream_name, position) "
        "VALUES ('receipt', 0), ('presence', 0), ('to_device', 0)"
    )
    # The latest receipt of each kind per user, room and thread ('' when
    # unthreaded); m.fully_read rows are the users' read markers.
    op.execute(
        """
        CREATE TABLE syncapi_receipts (
            room_id TEXT NOT NULL,
            receipt_type TEXT NOT NULL,
            user_id TEXT NOT NULL,
            thread_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            ts BIGINT NOT NULL,
            stream_pos BIGINT NOT NULL,
            PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
        )
        """
    )
    op.execute("CREATE INDEX syncapi_receipts_stream ON syncapi_receipts (stream_pos)")
    op.execute(
        """
        CREATE TABLE syncapi_presence (
            user_id TEXT NOT NULL PRIMARY KEY,
            presence TEXT NOT NULL,
            status_msg TEXT,
            last_active_ts BIGINT NOT NULL,
            stream_pos BIGINT NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX syncapi_presence_stream ON syncapi_presence (stream_pos)")
    # One row per message and target device; deleted once the device has
    # synced past it.
    op.execute(
        """
        CREATE TABLE syncapi_send_to_device (
            stream_pos BIGINT NOT NULL PRIMARY KEY,
            target_user_id TEXT NOT NULL,
            target_device_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            sender TEXT NOT NULL,
            event_type TEXT NOT NULL,
            content_json TEXT NOT NULL,
            UNIQUE (target_user_id, target_device_id, message_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX syncapi_send_to_device_target ON syncapi_send_to_device "
        "(target_user_id, target_device_id, stream_pos)"
    )


def downgrade() -> None:
    for table in ("syncapi_send_to_device", "syncapi_presence", "syncapi_receipts"):
        op.execute(f"DROP TABLE {table}")
    op.execute("DELETE FROM syncapi_stream_position WHERE stream_name IN ('receipt', 'presence', 'to_device')")
