"""Rooms, events, the DAG's edges, state snapshots, memberships, the output
outbox and input failures.

Revision ID: roomserver_0001
Revises:
Create Date: 2026-11-26

Schema changelog (roomserver):
  roomserver_0001: roomserver_rooms, roomserver_event_types, roomserver_event_state_keys,
    roomserver_events, roomserver_event_json, roomserver_prev_events, roomserver_auth_events,
    roomserver_state_snapshots, roomserver_state_entries, roomserver_membership,
    roomserver_output_outbox, roomserver_input_failures.

Written with ``op.create_table`` rather than raw SQL because the numeric IDs
auto-increment differently on SQLite (``INTEGER PRIMARY KEY AUTOINCREMENT``,
never reused after a rollback) and PostgreSQL (a BIGINT identity).
"""

import sqlalchemy as sa
from alembic import op

revision = "roomserver_0001"
down_revision = None
branch_labels = None
depends_on = None

NID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "roomserver_rooms",
        sa.Column("room_nid", NID, primary_key=True, autoincrement=True),
        sa.Column("room_id", sa.Text, nullable=False, unique=True),
        sa.Column("room_version", sa.Text, nullable=False),
        sa.Column("create_event_nid", sa.BigInteger, nullable=True),
        sa.Column("state_snapshot_nid", sa.BigInteger, nullable=True),
        sa.Column("forward_extremities", sa.Text, nullable=False, server_default="[]"),
        sa.Column("last_sent_event_id", sa.Text, nullable=False, server_default=""),
        sa.Column("last_stream_position", sa.BigInteger, nullable=False, server_default="0"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "roomserver_event_types",
        sa.Column("type_nid", NID, primary_key=True, autoincrement=True),
        sa.Column("event_type", sa.Text, nullable=False, unique=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "roomserver_event_state_keys",
        sa.Column("state_key_nid", NID, primary_key=True, autoincrement=True),
        sa.Column("state_key", sa.Text, nullable=False, unique=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "roomserver_events",
        sa.Column("event_nid", NID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Text, nullable=False, unique=True),
        sa.Column("room_nid", sa.BigInteger, nullable=False),
        sa.Column("type_nid", sa.BigInteger, nullable=False),
        sa.Column("state_key_nid", sa.BigInteger, nullable=True),
        sa.Column("depth", sa.BigInteger, nullable=False),
        sa.Column("is_outlier", sa.Boolean, nullable=False),
        sa.Column("is_rejected", sa.Boolean, nullable=False),
        sa.Column("is_soft_failed", sa.Boolean, nullable=False),
        sa.Column("rejection_reason", sa.Text, nullable=True),
        sa.Column("sent_to_output", sa.Boolean, nullable=False),
        sa.Column("state_before_nid", sa.BigInteger, nullable=True),
        sa.Column("state_after_nid", sa.BigInteger, nullable=True),
        sa.Column("stream_position", sa.BigInteger, nullable=True),
        sa.Column("redacted_by", sa.Text, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("roomserver_events_room_stream", "roomserver_events", ["room_nid", "stream_position"])
    op.create_table(
        "roomserver_event_json",
        sa.Column("event_nid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_json", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "roomserver_prev_events",
        sa.Column("event_nid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("prev_event_id", sa.Text, primary_key=True),
    )
    op.create_index("roomserver_prev_events_prev", "roomserver_prev_events", ["prev_event_id"])
    op.create_table(
        "roomserver_auth_events",
        sa.Column("event_nid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("auth_event_nid", sa.BigInteger, primary_key=True, autoincrement=False),
    )
    op.create_index("roomserver_auth_events_auth", "roomserver_auth_events", ["auth_event_nid"])
    op.create_table(
        "roomserver_state_snapshots",
        sa.Column("snapshot_nid", NID, primary_key=True, autoincrement=True),
        sa.Column("room_nid", sa.BigInteger, nullable=False),
        sa.Column("parent_nid", sa.BigInteger, nullable=True),
        sa.Column("delta_depth", sa.Integer, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "roomserver_state_entries",
        sa.Column("snapshot_nid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("type_nid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("state_key_nid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_nid", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "roomserver_membership",
        sa.Column("room_nid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("target_nid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("membership", sa.Text, nullable=False),
        sa.Column("event_nid", sa.BigInteger, nullable=False),
    )
    op.create_index("roomserver_membership_target", "roomserver_membership", ["target_nid", "membership"])
    op.create_table(
        "roomserver_output_outbox",
        sa.Column("outbox_nid", NID, primary_key=True, autoincrement=True),
        sa.Column("room_nid", sa.BigInteger, nullable=False),
        sa.Column("event_nid", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("roomserver_output_outbox_event", "roomserver_output_outbox", ["event_nid"])
    op.create_table(
        "roomserver_input_failures",
        sa.Column("failure_nid", NID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=True),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("roomserver_input_failures_event", "roomserver_input_failures", ["event_id"])
    op.create_index("roomserver_input_failures_request", "roomserver_input_failures", ["request_id"])


def downgrade() -> None:
    for table in ("roomserver_input_failures", "roomserver_output_outbox", "roomserver_membership",
                  "roomserver_state_entries", "roomserver_state_snapshots", "roomserver_auth_events",
                  "roomserver_prev_events", "roomserver_event_json", "roomserver_events",
                  "roomserver_event_state_keys", "roomserver_event_types", "roomserver_rooms"):
        op.drop_table(table)
