"""Profiles: display name and avatar URL per account.

Revision ID: userapi_0002
Revises: userapi_0001
Create Date: 2026-11-26

Schema changelog (userapi):
  userapi_0002: userapi_profiles.
"""

from alembic import op

revision = "userapi_0002"
down_revision = "userapi_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE userapi_profiles (
            localpart TEXT NOT NULL PRIMARY KEY,
            display_name TEXT NOT NULL DEFAULT '',
            avatar_url TEXT NOT NULL DEFAULT ''
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE userapi_profiles")
