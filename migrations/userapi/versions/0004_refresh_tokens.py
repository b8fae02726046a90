"""Refresh tokens and expiring access tokens.

Revision ID: userapi_0004
Revises: userapi_0003
Create Date: 2026-11-26

Schema changelog (userapi):
  userapi_0004: userapi_access_tokens gains expires_ts (NULL: never), refresh_sha256 (the
  refresh token issued with it) and refreshed_from (the refresh token whose use issued it,
  until the token is first used); userapi_refresh_tokens.
"""

from alembic import op

revision = "userapi_0004"
down_revision = "userapi_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE userapi_access_tokens ADD COLUMN expires_ts BIGINT")
    op.execute("ALTER TABLE userapi_access_tokens ADD COLUMN refresh_sha256 TEXT")
    op.execute("ALTER TABLE userapi_access_tokens ADD COLUMN refreshed_from TEXT")
    op.execute(
        """
        CREATE TABLE userapi_refresh_tokens (
            -- Hex SHA-256 of the token, as for access tokens.
            token_sha256 TEXT NOT NULL PRIMARY KEY,
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            created_ts BIGINT NOT NULL,
            -- The refresh token this one replaced: revoked once this one or its
            -- access token is used.
            prev_sha256 TEXT
        )
        """
    )
    op.execute("CREATE INDEX userapi_refresh_tokens_device ON userapi_refresh_tokens (user_id, device_id)")
    op.execute("CREATE INDEX userapi_refresh_tokens_prev ON userapi_refresh_tokens (prev_sha256)")


def downgrade() -> None:
    op.execute("DROP TABLE userapi_refresh_tokens")
    op.execute("ALTER TABLE userapi_access_tokens DROP COLUMN refreshed_from")
    op.execute("ALTER TABLE userapi_access_tokens DROP COLUMN refresh_sha256")
    op.execute("ALTER TABLE userapi_access_tokens DROP COLUMN expires_ts")
