"""Client transaction IDs, for idempotent sends.

Revision ID: clientapi_0001
Revises:
Create Date: 2026-11-26

Schema changelog (clientapi):
  clientapi_0001: clientapi_transactions.
"""

from alembic import op

revision = "clientapi_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE clientapi_transactions (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            -- The request the transaction ID was used for, e.g. send/<room>/<type>.
            endpoint TEXT NOT NULL,
            txn_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            created_ts BIGINT NOT NULL,
            PRIMARY KEY (user_id, device_id, endpoint, txn_id)
        )
        """
    )
    op.execute("CREATE INDEX clientapi_transactions_created ON clientapi_transactions (created_ts)")


def downgrade() -> None:
    op.execute("DROP TABLE clientapi_transactions")
