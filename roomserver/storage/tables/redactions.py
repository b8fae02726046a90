"""``roomserver_redactions``: accepted redactions whose target event the room
server has not seen yet. When the target arrives the redaction is applied
(if allowed) and the row deleted: events arrive out of order over
federation, and a redaction must not lose to the event it redacts."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Table, Text

from roomserver.storage.tables.base import metadata

pending_redactions = Table(
    "roomserver_redactions",
    metadata,
    Column("redaction_event_nid", BigInteger, primary_key=True, autoincrement=False),
    Column("redacts_event_id", Text, nullable=False),
)
Index("roomserver_redactions_redacts", pending_redactions.c.redacts_event_id)
