"""Device list changes, a stream of their own (device_lists in /sync, /keys/changes).

Revision ID: syncapi_0009
Revises: syncapi_0008
Create Date: 2026-11-26

Schema changelog (syncapi):
  syncapi_0009: syncapi_device_list_changes; stream counter 'device_list' in syncapi_stream_position.
"""

from alembic import op

revision = "syncapi_0009"
down_revision = "syncapi_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("INSERT INTO syncapi_stream_position (stream_name, position) VALUES ('device_list', 0)")
    # The device-list position of each user's (local or remote) last change of
    # devices or keys: who changed since a token is one range scan.
    op.execute(
        """
        CREATE TABLE syncapi_device_list_changes (
            user_id TEXT NOT NULL PRIMARY KEY,
            stream_pos BIGINT NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX syncapi_device_list_changes_pos ON syncapi_device_list_changes (stream_pos)")


def downgrade() -> None:
    op.execute("DROP TABLE syncapi_device_list_changes")
    op.execute("DELETE FROM syncapi_stream_position WHERE stream_name = 'device_list'")
