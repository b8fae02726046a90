"""Remote servers' signing keys (the KeyRing's cache and the notary's store).

Revision ID: federationapi_0001
Revises:
Create Date: 2026-11-26

Schema changelog (federationapi):
  federationapi_0001: federationapi_server_keys.
"""

from alembic import op

revision = "federationapi_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE federationapi_server_keys (
            server_name TEXT NOT NULL,
            key_id TEXT NOT NULL,
            -- Unpadded base64 ed25519 public key.
            verify_key TEXT NOT NULL,
            -- Until when (ms) the key may be used: the response's valid_until_ts
            -- capped at 7 days after fetching, or the old key's expired_ts.
            valid_until_ts BIGINT NOT NULL,
            -- Set when the server lists the key under old_verify_keys.
            expired_ts BIGINT,
            fetched_ts BIGINT NOT NULL,
            -- The server's own signed /_matrix/key/v2/server response the key
            -- came in (only the server's signatures), served again as a notary.
            response_json TEXT NOT NULL,
            PRIMARY KEY (server_name, key_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE federationapi_server_keys")
