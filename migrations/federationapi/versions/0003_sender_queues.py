"""The federation sender: joined servers per room, each room's last handled
output position, and the durable per-destination queue.

Revision ID: federationapi_0003
Revises: federationapi_0002
Create Date: 2026-11-26

Schema changelog (federationapi):
  federationapi_0003: federationapi_sender_rooms, federationapi_joined_hosts,
    federationapi_queue_json, federationapi_queue.

Written with ``op.create_table`` because the queue positions auto-increment
differently on SQLite (``INTEGER PRIMARY KEY AUTOINCREMENT``, never reused,
so the queue's order is the order of insertion) and PostgreSQL.
"""

import sqlalchemy as sa
from alembic import op

revision = "federationapi_0003"
down_revision = "federationapi_0002"
branch_labels = None
depends_on = None

NID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "federationapi_sender_rooms",
        sa.Column("room_id", sa.Text, primary_key=True),
        # The room_stream_position of the last NewRoomEvent handled: a record
        # at or below it is a replay (after a crash) and is skipped.
        sa.Column("stream_position", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "federationapi_joined_hosts",
        sa.Column("room_id", sa.Text, primary_key=True),
        # The m.room.member event (membership "join") in the current state.
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("server_name", sa.Text, nullable=False),
    )
    op.create_index("federationapi_joined_hosts_user_idx", "federationapi_joined_hosts", ["user_id"])
    op.create_table(
        "federationapi_queue_json",
        sa.Column("json_nid", NID, primary_key=True, autoincrement=True),
        # The PDU, or the EDU ({"edu_type", "content"}), as sent; one copy
        # however many destinations it goes to.
        sa.Column("json_text", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "federationapi_queue",
        sa.Column("queue_position", NID, primary_key=True, autoincrement=True),
        sa.Column("destination", sa.Text, nullable=False),
        # "pdu" or "edu".
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("json_nid", sa.BigInteger, nullable=False),
        # PDUs: the event ID (for the per-PDU results of the answer).
        sa.Column("event_id", sa.Text, nullable=True),
        # EDUs superseded by a newer one with the same key (a user's typing in
        # a room, a user's presence) are replaced while not yet in a transaction.
        sa.Column("coalesce_key", sa.Text, nullable=True),
        # Ephemeral EDUs (typing) not worth sending after this time (ms).
        sa.Column("expires_ts", sa.BigInteger, nullable=True),
        # Set once the entry is part of a transaction: the same ID is used on
        # every retry, also after a restart, so the receiver never applies it twice.
        sa.Column("txn_id", sa.Text, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("federationapi_queue_destination_idx", "federationapi_queue",
                    ["destination", "kind", "queue_position"])
    op.create_index("federationapi_queue_json_nid_idx", "federationapi_queue", ["json_nid"])


def downgrade() -> None:
    op.drop_table("federationapi_queue")
    op.drop_table("federationapi_queue_json")
    op.drop_table("federationapi_joined_hosts")
    op.drop_table("federationapi_sender_rooms")
