"""Index the state history by user, for membership history lookups.

Revision ID: syncapi_0002
Revises: syncapi_0001
Create Date: 2026-11-26

Schema changelog (syncapi):
  syncapi_0002: syncapi_state_history_user index on (state_key, type).
"""

from alembic import op

revision = "syncapi_0002"
down_revision = "syncapi_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A user's past memberships (history visibility, /members of a room they
    # left) are looked up by user across rooms.
    op.execute("CREATE INDEX syncapi_state_history_user ON syncapi_state_history (state_key, type)")


def downgrade() -> None:
    op.execute("DROP INDEX syncapi_state_history_user")
