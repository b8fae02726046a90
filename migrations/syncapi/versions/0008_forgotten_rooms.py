"""Rooms a user has forgotten (POST /rooms/{roomId}/forget).

Revision ID: syncapi_0008
Revises: syncapi_0007
Create Date: 2026-11-26

Schema changelog (syncapi):
  syncapi_0008: syncapi_forgotten_rooms.
"""

from alembic import op

revision = "syncapi_0008"
down_revision = "syncapi_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A room is forgotten as of the user's membership event: a later
    # membership (joining again, leaving again) brings it back.
    op.execute(
        """
        CREATE TABLE syncapi_forgotten_rooms (
            user_id TEXT NOT NULL,
            room_id TEXT NOT NULL,
            membership_event_id TEXT NOT NULL,
            PRIMARY KEY (user_id, room_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE syncapi_forgotten_rooms")
