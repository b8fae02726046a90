"""Keep the event a transaction built until the room server has answered.

Revision ID: clientapi_0002
Revises: clientapi_0001
Create Date: 2026-11-26

Schema changelog (clientapi):
  clientapi_0002: clientapi_transactions gains pending, room_version and
  event_json: a send is recorded before it is input, so a retry after a
  failed input call re-inputs the same event instead of building a second.
"""

import sqlalchemy as sa
from alembic import op

revision = "clientapi_0002"
down_revision = "clientapi_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clientapi_transactions",
                  sa.Column("pending", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("clientapi_transactions", sa.Column("room_version", sa.Text(), nullable=True))
    op.add_column("clientapi_transactions", sa.Column("event_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clientapi_transactions") as batch:
        batch.drop_column("event_json")
        batch.drop_column("room_version")
        batch.drop_column("pending")
