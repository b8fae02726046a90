"""The published room directory.

Revision ID: clientapi_0003
Revises: clientapi_0002
Create Date: 2026-11-26

Schema changelog (clientapi):
  clientapi_0003: clientapi_room_directory (rooms published with
  visibility=public, listed by /publicRooms).
"""

from alembic import op

revision = "clientapi_0003"
down_revision = "clientapi_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE clientapi_room_directory (
            room_id TEXT NOT NULL PRIMARY KEY,
            published_ts BIGINT NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE clientapi_room_directory")
