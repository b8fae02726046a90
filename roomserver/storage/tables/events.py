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


#: The columns of a new event's row, in the order ``INSERT_EVENT_WITH_EDGES_PG`` numbers them.
NEW_EVENT_COLUMNS = ("event_id", "room_nid", "type_nid", "state_key_nid", "depth", "is_outlier", "is_rejected",
                     "is_soft_failed", "rejection_reason", "sent_to_output", "state_before_nid",
                     "state_after_nid", "stream_position")

#: PostgreSQL: a new event's row, its JSON and its prev and auth edges in one
#: statement (one round trip instead of four: the edges need the NID the
#: row gets). Answers the NID. Parameters: NEW_EVENT_COLUMNS, then
#: ``event_json`` (bytes), ``prev_event_ids`` (text[]), ``auth_event_nids`` (bigint[]).
INSERT_EVENT_WITH_EDGES_PG = f"""
WITH new_event AS (
    INSERT INTO {events.name} ({", ".join(NEW_EVENT_COLUMNS)})
    VALUES ($1::TEXT, $2::BIGINT, $3::BIGINT, $4::BIGINT, $5::BIGINT, $6::BOOLEAN, $7::BOOLEAN, $8::BOOLEAN,
            $9::TEXT, $10::BOOLEAN, $11::BIGINT, $12::BIGINT, $13::BIGINT)
    RETURNING event_nid
), json_row AS (
    INSERT INTO {event_json.name} (event_nid, event_json) SELECT event_nid, $14::BYTEA FROM new_event
), prev_rows AS (
    INSERT INTO {prev_events.name} (event_nid, prev_event_id)
    SELECT new_event.event_nid, prev.id FROM new_event, unnest($15::TEXT[]) AS prev(id)
), auth_rows AS (
    INSERT INTO {auth_events.name} (event_nid, auth_event_nid)
    SELECT new_event.event_nid, auth.nid FROM new_event, unnest($16::BIGINT[]) AS auth(nid)
)
SELECT event_nid FROM new_event
"""
INSERT_EVENT_WITH_EDGES_PG_NAMES = (*NEW_EVENT_COLUMNS, "event_json", "prev_event_ids", "auth_event_nids")


def _prefetch_pg() -> str:
    # Imported here: the other tables' modules are siblings of this one.
    from roomserver.storage.tables.redactions import pending_redactions
    from roomserver.storage.tables.rooms import rooms
    from roomserver.storage.tables.transactions import KEY_COLUMNS, transactions

    key_columns = ", ".join(f"t.{c}" for c in KEY_COLUMNS)
    event_columns = ", ".join(f"e.{c.name}" for c in events.columns)
    room_columns = ", ".join(f"r.{c.name}" for c in rooms.columns)
    return f"""
SELECT
    ARRAY(SELECT ROW(p.prev_event_id, p.event_nid, 0) FROM {prev_events.name} AS p
          WHERE p.prev_event_id = ANY($1::TEXT[])
          UNION ALL
          SELECT ROW(w.redacts_event_id, w.redaction_event_nid, 1) FROM {pending_redactions.name} AS w
          WHERE w.redacts_event_id = ANY($1::TEXT[])),
    ARRAY(SELECT ROW({event_columns}) FROM {events.name} AS e
          WHERE e.event_id = ANY($2::TEXT[])
             OR e.event_nid IN (SELECT extremity::BIGINT FROM {rooms.name} AS x,
                                json_array_elements_text(x.forward_extremities::JSON) AS extremity
                                WHERE x.room_id = ANY($3::TEXT[]))),
    ARRAY(SELECT ROW({room_columns}) FROM {rooms.name} AS r WHERE r.room_id = ANY($3::TEXT[])),
    ARRAY(SELECT nextval(pg_get_serial_sequence('{events.name}', 'event_nid'))
          FROM generate_series(1, $4::INTEGER)),
    ARRAY(SELECT ROW({key_columns}, t.event_id) FROM {transactions.name} AS t
          WHERE ({key_columns}) IN (SELECT * FROM unnest($5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[],
                                                          $9::TEXT[])))
"""


#: PostgreSQL: what an input batch reads first, in one statement (one round
#: trip instead of three): the events naming ``$1`` (event IDs) as prev
#: events or as a pending redaction's target, as (named, by, kind 0 or 1);
#: the rows of the events ``$2`` (event IDs; the table's columns in order)
#: and of the forward extremities of the rooms ``$3`` (room IDs; what an
#: event that forks the room, as concurrent sends do, reads next); the rows
#: of the rooms ``$3`` (the rooms table's columns in order); ``$4`` new
#: event NIDs, reserved for the batch's events (their rows are then written
#: at the end, together: ``WRITE_HELD_PG``); the rows of
#: ``roomserver_transactions`` whose keys are ``$5``-``$9`` (the key's
#: columns, an array each), as (key columns..., event ID).
PREFETCH_PG = _prefetch_pg()
PREFETCH_PG_NAMES = ("named_ids", "event_ids", "room_ids", "nid_count", "txn_room_ids", "txn_user_ids",
                     "txn_device_ids", "txn_scopes", "txn_txn_ids")


def _write_held_pg() -> str:
    from roomserver.storage.tables.outbox import output_outbox
    from roomserver.storage.tables.rooms import rooms
    from roomserver.storage.tables.transactions import KEY_COLUMNS, transactions

    columns = ("event_nid", *NEW_EVENT_COLUMNS)
    types = ("BIGINT", "TEXT", "BIGINT", "BIGINT", "BIGINT", "BIGINT", "BOOLEAN", "BOOLEAN", "BOOLEAN", "TEXT",
             "BOOLEAN", "BIGINT", "BIGINT", "BIGINT")
    arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, start=1))
    return f"""
WITH new_events AS (
    INSERT INTO {events.name} ({", ".join(columns)}) SELECT * FROM unnest({arrays})
), json_rows AS (
    INSERT INTO {event_json.name} (event_nid, event_json) SELECT * FROM unnest($1::BIGINT[], $15::BYTEA[])
), prev_rows AS (
    INSERT INTO {prev_events.name} (event_nid, prev_event_id) SELECT * FROM unnest($16::BIGINT[], $17::TEXT[])
), auth_rows AS (
    INSERT INTO {auth_events.name} (event_nid, auth_event_nid) SELECT * FROM unnest($18::BIGINT[], $19::BIGINT[])
), outbox_rows AS (
    INSERT INTO {output_outbox.name} (room_nid, event_nid, payload)
    SELECT o.room_nid, o.event_nid, o.payload
    FROM unnest($20::BIGINT[], $21::BIGINT[], $22::BYTEA[]) WITH ORDINALITY AS o(room_nid, event_nid, payload, n)
    ORDER BY o.n
), transaction_rows AS (
    INSERT INTO {transactions.name} ({", ".join(KEY_COLUMNS)}, event_id, added_ms)
    SELECT * FROM unnest($29::TEXT[], $30::TEXT[], $31::TEXT[], $32::TEXT[], $33::TEXT[], $34::TEXT[],
                         $35::BIGINT[])
)
UPDATE {rooms.name} AS r
SET create_event_nid = u.create_event_nid, state_snapshot_nid = u.state_snapshot_nid,
    forward_extremities = u.forward_extremities, last_sent_event_id = u.last_sent_event_id,
    last_stream_position = u.last_stream_position
FROM unnest($23::BIGINT[], $24::BIGINT[], $25::BIGINT[], $26::TEXT[], $27::TEXT[], $28::BIGINT[])
    AS u(room_nid, create_event_nid, state_snapshot_nid, forward_extremities, last_sent_event_id,
         last_stream_position)
WHERE r.room_nid = u.room_nid
"""


#: PostgreSQL: what an input transaction held back, in one statement: new
#: events whose NIDs were reserved at the batch's start (``PREFETCH_PG``)
#: with their JSON and edges, outbox rows (numbered in the order given: the
#: outbox is sent in ``outbox_nid`` order) and the rows of the rooms it
#: changed. Every part is arrays, any of them may be empty. Parameters: the
#: events' columns (``event_nid``, NEW_EVENT_COLUMNS, ``event_json``: an array each),
#: the prev edges (``prev_event_nids``, ``prev_event_ids``), the auth edges
#: (``auth_event_nids``, ``auth_nids``), the outbox rows' columns, the rooms',
#: the ``roomserver_transactions`` rows' (``txn_<column>s``).
WRITE_HELD_PG = _write_held_pg()
WRITE_HELD_PG_NAMES = (
    "event_nid", *NEW_EVENT_COLUMNS, "event_json", "prev_event_nids", "prev_event_ids",
    "auth_event_nids", "auth_nids", "outbox_room_nids", "outbox_event_nids", "outbox_payloads", "room_nids",
    "create_event_nids", "state_snapshot_nids", "forward_extremities", "last_sent_event_ids",
    "last_stream_positions", "txn_room_ids", "txn_user_ids", "txn_device_ids", "txn_scopes", "txn_txn_ids",
    "txn_event_ids", "txn_added_mss")
