"""Inbound /send transactions already answered (idempotence by origin and
transaction ID).

Revision ID: federationapi_0002
Revises: federationapi_0001
Create Date: 2026-11-26

Schema changelog (federationapi):
  federationapi_0002: federationapi_inbound_transactions.
"""

from alembic import op

revision = "federationapi_0002"
down_revision = "federationapi_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE federationapi_inbound_transactions (
            origin TEXT NOT NULL,
            txn_id TEXT NOT NULL,
            -- The JSON body answered the first time, answered again on a retry.
            response_json TEXT NOT NULL,
            received_ts BIGINT NOT NULL,
            PRIMARY KEY (origin, txn_id)
        )
        """
    )
    op.execute("CREATE INDEX federationapi_inbound_transactions_received_ts "
               "ON federationapi_inbound_transactions (received_ts)")


def downgrade() -> None:
    op.execute("DROP TABLE federationapi_inbound_transactions")
