"""create storagetest_tags, keyed by (thing_id, tag)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Hand-written SQL that both SQLite and PostgreSQL accept.
    op.execute(
        "CREATE TABLE storagetest_tags ("
        " thing_id TEXT NOT NULL REFERENCES storagetest_things (thing_id),"
        " tag TEXT NOT NULL,"
        " weight INTEGER NOT NULL,"
        " UNIQUE (thing_id, tag))"
    )


def downgrade() -> None:
    op.execute("DROP TABLE storagetest_tags")
