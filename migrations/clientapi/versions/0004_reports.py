"""Reports of events and rooms.

Revision ID: clientapi_0004
Revises: clientapi_0003
Create Date: 2026-11-26

Schema changelog (clientapi):
  clientapi_0004: clientapi_event_reports (POST /rooms/{roomId}/report/{eventId}) and
  clientapi_room_reports (POST /rooms/{roomId}/report), kept for the server's admins.
"""

from alembic import op

revision = "clientapi_0004"
down_revision = "clientapi_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE clientapi_event_reports (
            report_id TEXT NOT NULL PRIMARY KEY,
            room_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            reason TEXT,
            score BIGINT,
            received_ts BIGINT NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX clientapi_event_reports_received ON clientapi_event_reports (received_ts)")
    op.execute(
        """
        CREATE TABLE clientapi_room_reports (
            report_id TEXT NOT NULL PRIMARY KEY,
            room_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            received_ts BIGINT NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX clientapi_room_reports_received ON clientapi_room_reports (received_ts)")


def downgrade() -> None:
    op.execute("DROP TABLE clientapi_room_reports")
    op.execute("DROP TABLE clientapi_event_reports")
