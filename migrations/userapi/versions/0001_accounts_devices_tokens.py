"""Accounts, devices and access tokens.

Revision ID: userapi_0001
Revises:
Create Date: 2026-11-26

Schema changelog (userapi):
  userapi_0001: userapi_accounts, userapi_devices, userapi_access_tokens.
"""

from alembic import op

revision = "userapi_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE userapi_accounts (
            localpart TEXT NOT NULL PRIMARY KEY,
            -- "scrypt$<n>$<r>$<p>$<salt>$<hash>", or NULL: no password login.
            password_hash TEXT,
            created_ts BIGINT NOT NULL,
            is_guest BOOLEAN NOT NULL DEFAULT FALSE,
            deactivated BOOLEAN NOT NULL DEFAULT FALSE
        )
        """
    )
    op.execute(
        """
        CREATE TABLE userapi_devices (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            display_name TEXT NOT NULL DEFAULT '',
            created_ts BIGINT NOT NULL,
            last_seen_ts BIGINT NOT NULL,
            last_seen_ip TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (user_id, device_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE userapi_access_tokens (
            -- Hex SHA-256 of the token: a leaked table gives no usable tokens.
            token_sha256 TEXT NOT NULL PRIMARY KEY,
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            created_ts BIGINT NOT NULL
        )
        """
    )
    op.execute(
        "CREATE INDEX userapi_access_tokens_device ON userapi_access_tokens (user_id, device_id)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE userapi_access_tokens")
    op.execute("DROP TABLE userapi_devices")
    op.execute("DROP TABLE userapi_accounts")
