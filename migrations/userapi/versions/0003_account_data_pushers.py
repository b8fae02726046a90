"""Account data (global and per room) and pushers.

Revision ID: userapi_0003
Revises: userapi_0002
Create Date: 2026-11-26

Schema changelog (userapi):
  userapi_0003: userapi_account_data, userapi_pushers.
"""

from alembic import op

revision = "userapi_0003"
down_revision = "userapi_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE userapi_account_data (
            user_id TEXT NOT NULL,
            room_id TEXT NOT NULL,
            type TEXT NOT NULL,
            content_json TEXT NOT NULL,
            PRIMARY KEY (user_id, room_id, type)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE userapi_pushers (
            user_id TEXT NOT NULL,
            app_id TEXT NOT NULL,
            pushkey TEXT NOT NULL,
            kind TEXT NOT NULL,
            app_display_name TEXT NOT NULL,
            device_display_name TEXT NOT NULL,
            profile_tag TEXT NOT NULL,
            lang TEXT NOT NULL,
            data_json TEXT NOT NULL,
            created_ts BIGINT NOT NULL,
            PRIMARY KEY (user_id, app_id, pushkey)
        )
        """
    )
    op.execute("CREATE INDEX userapi_pushers_app_pushkey ON userapi_pushers (app_id, pushkey)")


def downgrade() -> None:
    op.execute("DROP TABLE userapi_pushers")
    op.execute("DROP TABLE userapi_account_data")
