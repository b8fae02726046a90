"""``roomserver_output_outbox``: output-log entries written in the same
transaction as the events that caused them and deleted once appended to
``roomserver.output``. A crash between the database commit and the append
leaves them here; they are sent on restart or when the input is replayed."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Table

from roomserver.storage.tables.base import NID, metadata
from roomserver.storage.tables.rooms import rooms

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

#: PostgreSQL: what an input transaction writes last, in one statement (one
#: round trip instead of two or more): its outbox rows, numbered in the order
#: given (``WITH ORDINALITY ... ORDER BY``: the outbox is sent in
#: ``outbox_nid`` order), and the rows of the rooms it changed. Parameters:
#: the outbox rows' columns as arrays, then the rooms' (see ``rooms``).
WRITE_OUTBOX_AND_ROOMS_PG = f"""
WITH outbox_rows AS (
    INSERT INTO {output_outbox.name} (room_nid, event_nid, payload)
    SELECT o.room_nid, o.event_nid, o.payload
    FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BYTEA[]) WITH ORDINALITY AS o(room_nid, event_nid, payload, n)
    ORDER BY o.n
)
UPDATE {rooms.name} AS r
SET create_event_nid = u.create_event_nid, state_snapshot_nid = u.state_snapshot_nid,
    forward_extremities = u.forward_extremities, last_sent_event_id = u.last_sent_event_id,
    last_stream_position = u.last_stream_position
FROM unnest($4::BIGINT[], $5::BIGINT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[], $9::BIGINT[])
    AS u(room_nid, create_event_nid, state_snapshot_nid, forward_extremities, last_sent_event_id,
         last_stream_position)
WHERE r.room_nid = u.room_nid
"""
WRITE_OUTBOX_AND_ROOMS_PG_NAMES = ("outbox_room_nids", "outbox_event_nids", "outbox_payloads", "room_nids",
                                   "create_event_nids", "state_snapshot_nids", "forward_extremities",
                                   "last_sent_event_ids", "last_stream_positions")
