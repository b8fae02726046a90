"""Notifications: the events each local user's push rules said notify them.

Revision ID: syncapi_0007
Revises: syncapi_0006
Create Date: 2026-11-26

Schema changelog (syncapi):
  syncapi_0007: syncapi_notifications (one row per user and notifying event: the room, the
  thread ("" for the main timeline), the event's stream position, the push rule's actions,
  whether they highlight, and when it was stored). Counts in /sync are the rows after the
  user's latest read receipt; GET /notifications pages them by stream position.
"""

from alembic import op

revision = "syncapi_0007"
down_revision = "syncapi_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE syncapi_notifications (
            user_id TEXT NOT NULL,
            stream_pos BIGINT NOT NULL,
            room_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            thread_id TEXT NOT NULL,
            actions_json TEXT NOT NULL,
            highlight BOOLEAN NOT NULL,
            ts BIGINT NOT NULL,
            PRIMARY KEY (user_id, stream_pos)
        )
        """
    )
    op.execute("CREATE INDEX syncapi_notifications_room ON syncapi_notifications "
               "(user_id, room_id, stream_pos)")


def downgrade() -> None:
    op.execute("DROP TABLE syncapi_notifications")
