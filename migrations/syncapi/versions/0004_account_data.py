"""Account data (global and per room), a stream of its own.

Revision ID: syncapi_0004
Revises: syncapi_0003
Create Date: 2026-11-26

Schema changelog (syncapi):
  syncapi_0004: syncapi_account_data; stream counter 'account_data' in syncapi_stream_position.
"""

from alembic import op

revision = "syncapi_0004"
down_revision = "syncapi_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("INSERT INTO syncapi_stream_position (stream_name, position) VALUES ('account_data', 0)")
    # The latest content of each piece of a user's account data (room_id ''
    # for global data), at the account-data position of its last change.
    op.execute(
        """
        CREATE TABLE syncapi_account_data (
            user_id TEXT NOT NULL,
            room_id TEXT NOT NULL,
            type TEXT NOT NULL,
            content_json TEXT NOT NULL,
            stream_pos BIGINT NOT NULL,
            PRIMARY KEY (user_id, room_id, type)
        )
        """
    )
    op.execute("CREATE INDEX syncapi_account_data_user_pos ON syncapi_account_data (user_id, stream_pos)")


def downgrade() -> None:
    op.execute("DROP TABLE syncapi_account_data")
    op.execute("DELETE FROM syncapi_stream_position WHERE stream_name = 'account_data'")
