"""``roomserver_events`` (what the room server knows about each event),
``roomserver_event_json`` (the PDU as received, canonical JSON) and the DAG's
edges: ``roomserver_prev_events`` (by event ID, since a prev event may be
unknown) and ``roomserver_auth_events`` (by NID: auth events are always known
before an event is stored). The auth-event edges are the auth-chain index:
chains are walked with a recursive CTE (``auth_chain_query``)."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    LargeBinary,
    Select,
    Table,
    Text,
    select,
)

from roomserver.storage.tables.base import NID, metadata

events = Table(
    "roomserver_events",
    metadata,
    Column("event_nid", NID, primary_key=True, autoincrement=True),
    Column("event_id", Text, nullable=False, unique=True),
    Column("room_nid", BigInteger, nullable=False),
    Column("type_nid", BigInteger, nullable=False),
    # NULL for events that are not state events.
    Column("state_key_nid", BigInteger, nullable=True),
    Column("depth", BigInteger, nullable=False),
    Column("is_outlier", Boolean, nullable=False),
    Column("is_rejected", Boolean, nullable=False),
    Column("is_soft_failed", Boolean, nullable=False),
    Column("rejection_reason", Text, nullable=True),
    # True once every output-log entry this event caused has been appended.
    Column("sent_to_output", Boolean, nullable=False),
    # The state before and after the event; NULL for outliers.
    Column("state_before_nid", BigInteger, nullable=True),
    Column("state_after_nid", BigInteger, nullable=True),
    # Position in the room's output stream; NULL when never written there.
    Column("stream_position", BigInteger, nullable=True),
    # The redaction that redacted this event, once one was accepted.
    Column("redacted_by", Text, nullable=True),
    sqlite_autoincrement=True,
)
Index("roomserver_events_room_stream", events.c.room_nid, events.c.stream_position)

event_json = Table(
    "roomserver_event_json",
    metadata,
    Column("event_nid", BigInteger, primary_key=True, autoincrement=False),
    Column("event_json", LargeBinary, nullable=False),
)

prev_events = Table(
    "roomserver_prev_events",
    metadata,
    Column("event_nid", BigInteger, primary_key=True, autoincrement=False),
    Column("prev_event_id", Text, primary_key=True),
)
Index("roomserver_prev_events_prev", prev_events.c.prev_event_id)

auth_events = Table(
    "roomserver_auth_events",
    metadata,
    Column("event_nid", BigInteger, primary_key=True, autoincrement=False),
    Column("auth_event_nid", BigInteger, primary_key=True, autoincrement=False),
)
Index("roomserver_auth_events_auth", auth_events.c.auth_event_nid)


def auth_chain_query(event_nids: Collection[int]) -> Select[int]:
    """The NIDs of the auth chain of ``event_nids`` (their auth events, those
    events' auth events, and so on), without the starting events unless one
    is in another's chain. UNION (not UNION ALL) makes the walk terminate."""
    start = select(auth_events.c.auth_event_nid.label("nid")).where(
        auth_events.c.event_nid.in_(list(event_nids))
    )
    chain = start.cte("auth_chain", recursive=True)
    step = select(auth_events.c.auth_event_nid.label("nid")).join(
        chain, auth_events.c.event_nid == chain.c.nid
    )
    chain = chain.union(step)
    return select(chain.c.nid)
