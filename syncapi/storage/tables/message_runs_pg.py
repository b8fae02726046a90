"""A run of plain messages of one room written on PostgreSQL in ONE statement.

The usual write of a run (take stream positions, insert the events, their
search entries, the room's last applied entry, the push notifications) is
five statements inside BEGIN/COMMIT: seven round trips to the server, and
each statement through SQLAlchemy's execution path costs ~150-250 us of
Python on asyncpg. Here the whole run is one statement of data-modifying
CTEs, run on the raw asyncpg connection outside any explicit transaction:
PostgreSQL runs a single statement atomically in a transaction of its own,
so it is all or nothing, one round trip, and asyncpg keeps it prepared.

Positions are still taken by the UPDATE of the stream counter, whose row
lock is held until the statement commits: concurrent writers serialise on
it, so positions become visible in the order they were taken, as with the
transaction. The notifications are given with the run's ordinal of their
event (1 for the first) in place of a stream position; the statement adds
the base it took. Only for tables whose every conflict the statement either
refuses (an event ID stored already: the whole statement fails, nothing is
written) or ignores as the slow path does (search entries, notifications).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from syncapi.storage.tables.events import StoredEvent
from syncapi.storage.tables.notifications import StoredNotification
from syncapi.storage.tables.search import PG_TS_CONFIG
from syncapi.storage.tables.stream_position import GLOBAL_STREAM

# $1 count, $2 stream, $3 room; events $4-$15; search $16-$19; room position
# $20-$21; notifications $22-$28. Column lists match the tables' Core
# definitions (tests/component/syncapi compare both paths' rows).
WRITE_RUN_SQL = f"""
WITH pos AS (
    UPDATE syncapi_stream_position SET position = position + $1::bigint
    WHERE stream_name = $2::text
    RETURNING position - $1::bigint AS base
), ev AS (
    INSERT INTO syncapi_events (stream_pos, room_id, event_id, type, sender, state_key, depth, room_version,
                                event_json, unsigned_json, history_visibility, historical, state_only,
                                contains_url, txn_device_id, txn_id, origin_server_ts)
    SELECT pos.base + e.ord, $3::text, e.event_id, e.type, e.sender, NULL, e.depth, e.room_version,
           e.event_json, NULL, e.history_visibility, e.historical, false, e.contains_url, e.txn_device_id,
           e.txn_id, e.ts
    FROM pos, unnest($4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[],
                     $11::boolean[], $12::boolean[], $13::text[], $14::text[], $15::bigint[])
              WITH ORDINALITY AS e(event_id, type, sender, depth, room_version, event_json, history_visibility,
                                   historical, contains_url, txn_device_id, txn_id, ts, ord)
), se AS (
    INSERT INTO syncapi_search (stream_pos, event_id, room_id, key, value, vector)
    SELECT pos.base + s.ord, s.event_id, $3::text, s.key, s.value, to_tsvector('{PG_TS_CONFIG}', s.value)
    FROM pos, unnest($16::bigint[], $17::text[], $18::text[], $19::text[]) AS s(ord, event_id, key, value)
    ON CONFLICT (stream_pos) DO NOTHING
), rp AS (
    INSERT INTO syncapi_room_positions (room_id, last_event_id, room_stream_position)
    VALUES ($3::text, $20::text, $21::bigint)
    ON CONFLICT (room_id) DO UPDATE SET last_event_id = excluded.last_event_id,
                                       room_stream_position = excluded.room_stream_position
), nt AS (
    INSERT INTO syncapi_notifications (user_id, stream_pos, room_id, event_id, thread_id, actions_json,
                                       highlight, ts)
    SELECT n.user_id, pos.base + n.ord, $3::text, n.event_id, n.thread_id, n.actions_json, n.highlight, n.ts
    FROM pos, unnest($22::text[], $23::bigint[], $24::text[], $25::text[], $26::text[], $27::boolean[],
                     $28::bigint[]) AS n(user_id, ord, event_id, thread_id, actions_json, highlight, ts)
    ON CONFLICT (user_id, stream_pos) DO NOTHING
)
SELECT base FROM pos
"""


def write_run_args(room_id: str, events: Sequence[StoredEvent], search_entries: Sequence[tuple[int, str, str, str]],
                   last_event_id: str, room_stream_position: int,
                   notifications: Sequence[StoredNotification]) -> tuple[Any, ...]:
    """The statement's parameters. ``events``' stream positions are ignored
    (the statement numbers them); ``search_entries`` are (ordinal, event ID,
    key, value); ``notifications``' stream_pos is their event's ordinal."""
    columns: list[Any] = [[] for _ in range(12)]
    (event_ids, types, senders, depths, versions, jsons, visibilities, historicals, urls, txn_devices, txn_ids,
     timestamps) = columns
    for event in events:
        event_ids.append(event.event_id)
        types.append(event.type)
        senders.append(event.sender)
        depths.append(event.depth)
        versions.append(event.room_version)
        jsons.append(event.event_json)
        visibilities.append(event.history_visibility)
        historicals.append(event.historical)
        urls.append(event.contains_url)
        txn_devices.append(event.txn_device_id)
        txn_ids.append(event.txn_id)
        timestamps.append(event.origin_server_ts)
    search_columns: list[Any] = [list(c) for c in zip(*search_entries, strict=True)] if search_entries else [
        [], [], [], []]
    if notifications:
        (n_users, n_ords, _rooms, n_event_ids, n_threads, n_actions, n_highlights,
         n_ts) = (list(c) for c in zip(*notifications, strict=True))
    else:
        n_users, n_ords, n_event_ids, n_threads, n_actions, n_highlights, n_ts = [], [], [], [], [], [], []
    return (len(events), GLOBAL_STREAM, room_id, *columns, *search_columns, last_event_id, room_stream_position,
            n_users, n_ords, n_event_ids, n_threads, n_actions, n_highlights, n_ts)
