"""The room alias directory.

Revision ID: roomserver_0003
Revises: roomserver_0002
Create Date: 2026-11-26

Schema changelog (roomserver):
  roomserver_0003: roomserver_room_aliases (alias -> room ID and creator).
"""

import sqlalchemy as sa
from alembic import op

revision = "roomserver_0003"
down_revision = "roomserver_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "roomserver_room_aliases",
        sa.Column("alias", sa.Text, primary_key=True),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("creator", sa.Text, nullable=False),
    )
    op.create_index("roomserver_room_aliases_room", "roomserver_room_aliases", ["room_id"])


def downgrade() -> None:
    op.drop_table("roomserver_room_aliases")
