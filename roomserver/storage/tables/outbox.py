"""``roomserver_output_outbox``: output-log entries written in the same
transaction as the events that caused them and deleted once appended to
``roomserver.output``. A crash between the database commit and the append
leaves them here; they are sent on restart or when the input is replayed."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Table

from roomserver.storage.tables.base import NID, metadata

output_outbox = Table(
    "roomserver_output_outbox",
    metadata,
    Column("outbox_nid", NID, primary_key=True, autoincrement=True),
    Column("room_nid", BigInteger, nullable=False),
    Column("event_nid", BigInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    sqlite_autoincrement=True,
)
Index("roomserver_output_outbox_event", output_outbox.c.event_nid)
