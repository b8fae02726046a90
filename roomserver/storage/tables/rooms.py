"""``roomserver_rooms``: one row per room the room server knows.

``forward_extremities`` is a JSON list of event NIDs (a room has a handful);
``state_snapshot_nid`` is the current state (the state after the forward
extremities, resolved when there are several). ``last_sent_event_id`` and
``last_stream_position`` are what the next ``NewRoomEvent`` on the output log
refers back to.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Table, Text

from roomserver.storage.tables.base import NID, metadata

rooms = Table(
    "roomserver_rooms",
    metadata,
    Column("room_nid", NID, primary_key=True, autoincrement=True),
    Column("room_id", Text, nullable=False, unique=True),
    Column("room_version", Text, nullable=False),
    Column("create_event_nid", BigInteger, nullable=True),
    Column("state_snapshot_nid", BigInteger, nullable=True),
    Column("forward_extremities", Text, nullable=False, server_default="[]"),
    Column("last_sent_event_id", Text, nullable=False, server_default=""),
    Column("last_stream_position", BigInteger, nullable=False, server_default="0"),
    sqlite_autoincrement=True,
)
