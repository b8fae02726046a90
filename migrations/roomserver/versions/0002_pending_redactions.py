"""Redactions waiting for the event they redact.

Revision ID: roomserver_0002
Revises: roomserver_0001
Create Date: 2026-11-26

Schema changelog (roomserver):
  roomserver_0002: roomserver_redactions (accepted redactions whose target is not known yet).
"""

import sqlalchemy as sa
from alembic import op

revision = "roomserver_0002"
down_revision = "roomserver_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "roomserver_redactions",
        sa.Column("redaction_event_nid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("redacts_event_id", sa.Text, nullable=False),
    )
    op.create_index("roomserver_redactions_redacts", "roomserver_redactions", ["redacts_event_id"])


def downgrade() -> None:
    op.drop_table("roomserver_redactions")
