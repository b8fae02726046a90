"""The room server's ``MetaData`` and the column types its tables share."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, MetaData

metadata = MetaData()

#: A numeric ID (``*_nid``): BIGINT on PostgreSQL, and INTEGER on SQLite, where only an
#: ``INTEGER PRIMARY KEY`` column is the auto-incrementing rowid.
NID = BigInteger().with_variant(Integer(), "sqlite")
