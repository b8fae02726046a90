"""The event each local client's transaction produced.

Revision ID: roomserver_0004
Revises: roomserver_0003
Create Date: 2026-11-26

Schema changelog (roomserver):
  roomserver_0004: roomserver_transactions ((room, user, device, scope,
  transaction ID) -> event ID, with the time it was added).
"""

import sqlalchemy as sa
from alembic import op

revision = "roomserver_0004"
down_revision = "roomserver_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "roomserver_transactions",
        sa.Column("room_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("device_id", sa.Text, primary_key=True),
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("txn_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("added_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("roomserver_transactions_added", "roomserver_transactions", ["added_ms"])


def downgrade() -> None:
    op.drop_table("roomserver_transactions")
