"""``roomserver_input_failures``: input that could not be processed at all
(a malformed record, an unknown room version, an event for an unknown room,
unknown prev or auth events), with the reason. The record is skipped and the
room keeps working; this table is where an operator finds out why."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Table, Text

from roomserver.storage.tables.base import NID, metadata

input_failures = Table(
    "roomserver_input_failures",
    metadata,
    Column("failure_nid", NID, primary_key=True, autoincrement=True),
    Column("request_id", Text, nullable=False),
    Column("room_id", Text, nullable=False),
    # Empty when the record could not be parsed far enough to know it.
    Column("event_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    # The raw record when it could not be parsed.
    Column("payload", LargeBinary, nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    sqlite_autoincrement=True,
)
Index("roomserver_input_failures_event", input_failures.c.event_id)
Index("roomserver_input_failures_request", input_failures.c.request_id)
