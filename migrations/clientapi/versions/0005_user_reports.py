"""Reports of users.

Revision ID: clientapi_0005
Revises: clientapi_0004
Create Date: 2026-11-26

Schema changelog (clientapi):
  clientapi_0005: clientapi_user_reports (POST /users/{userId}/report), kept for the server's admins.
"""

from alembic import op

revision = "clientapi_0005"
down_revision = "clientapi_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE clientapi_user_reports (
            report_id TEXT NOT NULL PRIMARY KEY,
            target_user_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            received_ts BIGINT NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX clientapi_user_reports_received ON clientapi_user_reports (received_ts)")


def downgrade() -> None:
    op.execute("DROP TABLE clientapi_user_reports")
