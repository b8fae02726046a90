"""The tables of the fixture migration histories in tests/storage/migrations_fixture/
(components ``storagetest`` and ``othertest``), as the storage tests query them."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

FIXTURE = Path(__file__).resolve().parent / "migrations_fixture"

metadata = sa.MetaData()
things = sa.Table(
    "storagetest_things", metadata,
    sa.Column("thing_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("hits", sa.BigInteger, nullable=False, server_default="0"),
)
tags = sa.Table(
    "storagetest_tags", metadata,
    sa.Column("thing_id", sa.Text, sa.ForeignKey("storagetest_things.thing_id"), nullable=False),
    sa.Column("tag", sa.Text, nullable=False),
    sa.Column("weight", sa.Integer, nullable=False),
)
items = sa.Table(
    "othertest_items", metadata,
    sa.Column("item_id", sa.Integer, primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)
