"""syncapi_search: the full-text index over room events for POST /search.

One row per indexed event, keyed by its stream position: the text of
``content.body`` (m.room.message), ``content.name`` (m.room.name) or
``content.topic`` (m.room.topic) and which of those it is. The two engines
index it their own way behind the functions here:

- SQLite: an FTS5 virtual table whose rowid is the stream position, ranked
  with bm25; every word of the search term must match, as a prefix.
- PostgreSQL: a plain table with a ``tsvector`` column under a GIN index,
  queried with ``websearch_to_tsquery`` and ranked with ``ts_rank``.

No SQLAlchemy ``Table`` mirrors it (FTS5 tables are not ordinary tables),
so the statements are written out per dialect.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from matrixlib.events import Event

# Event type -> the content key whose text is indexed (and the spec's name for it).
INDEXED_KEYS: dict[str, tuple[str, str]] = {
    "m.room.message": ("body", "content.body"),
    "m.room.name": ("name", "content.name"),
    "m.room.topic": ("topic", "content.topic"),
}
ALL_KEYS = tuple(key for _, key in INDEXED_KEYS.values())
# The text search configuration of the PostgreSQL index (and its queries).
PG_TS_CONFIG = "english"
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class SearchHit:
    stream_pos: int
    room_id: str
    rank: float


def indexed_text(event: Event) -> tuple[str, str] | None:
    """(key, text) the event is indexed under, or None."""
    found = INDEXED_KEYS.get(event.type)
    if found is None:
        return None
    value = event.content.get(found[0])
    if not isinstance(value, str) or not value.strip():
        return None
    return found[1], value


def search_words(term: str) -> list[str]:
    """The words of a search term, lowercased (also the highlights)."""
    return [w.lower() for w in _WORD.findall(term)]


def _fts5_query(term: str) -> str:
    # Each word quoted (so nothing the user types is FTS5 syntax), as a prefix.
    return " ".join(f'"{word}"*' for word in search_words(term))


async def insert_entry(conn: AsyncConnection, *, stream_pos: int, room_id: str, event_id: str,
                       key: str, value: str) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(text(
            "INSERT INTO syncapi_search (stream_pos, event_id, room_id, key, value, vector) "
            f"VALUES (:pos, :event_id, :room_id, :key, :value, to_tsvector('{PG_TS_CONFIG}', :value)) "
            "ON CONFLICT (stream_pos) DO NOTHING"),
            {"pos": stream_pos, "event_id": event_id, "room_id": room_id, "key": key, "value": value})
    else:
        await conn.execute(text(
            "INSERT OR IGNORE INTO syncapi_search (rowid, event_id, room_id, key, value) "
            "VALUES (:pos, :event_id, :room_id, :key, :value)"),
            {"pos": stream_pos, "event_id": event_id, "room_id": room_id, "key": key, "value": value})


_INSERT_ENTRIES_POSTGRESQL = text(
    "INSERT INTO syncapi_search (stream_pos, event_id, room_id, key, value, vector) "
    f"VALUES (:pos, :event_id, :room_id, :key, :value, to_tsvector('{PG_TS_CONFIG}', :value)) "
    "ON CONFLICT (stream_pos) DO NOTHING")
_INSERT_ENTRIES_SQLITE = text(
    "INSERT OR IGNORE INTO syncapi_search (rowid, event_id, room_id, key, value) "
    "VALUES (:pos, :event_id, :room_id, :key, :value)")


async def insert_entries(conn: AsyncConnection, entries: Sequence[dict[str, object]]) -> None:
    """``insert_entry`` for several events in one executemany; each entry has
    the keys pos, event_id, room_id, key and value."""
    if not entries:
        return
    # Built once: text() parses its SQL for bind parameters each time it is made.
    statement = _INSERT_ENTRIES_POSTGRESQL if conn.dialect.name == "postgresql" else _INSERT_ENTRIES_SQLITE
    await conn.execute(statement, list(entries))


async def delete_entry(conn: AsyncConnection, stream_pos: int) -> None:
    column = "stream_pos" if conn.dialect.name == "postgresql" else "rowid"
    await conn.execute(text(f"DELETE FROM syncapi_search WHERE {column} = :pos"), {"pos": stream_pos})


async def search(conn: AsyncConnection, term: str, *, room_ids: Sequence[str], keys: Sequence[str],
                 order_by_rank: bool, limit: int, offset: int = 0,
                 before_pos: int | None = None) -> list[SearchHit]:
    """Matches of ``term`` in ``room_ids`` under ``keys``: best first
    (``order_by_rank``, paged with ``offset``) or newest first (paged with
    ``before_pos``, the stream position to stay below)."""
    if not room_ids or not keys or not search_words(term):
        return []
    params: dict[str, Any] = {"room_ids": list(room_ids), "keys": list(keys), "limit": limit,
                              "offset": offset}
    if conn.dialect.name == "postgresql":
        params["term"] = term
        where = ("vector @@ websearch_to_tsquery(:cfg, :term) AND room_id IN :room_ids AND key IN :keys")
        params["cfg"] = PG_TS_CONFIG
        rank = "ts_rank(vector, websearch_to_tsquery(:cfg, :term))"
        pos = "stream_pos"
    else:
        params["term"] = _fts5_query(term)
        where = "syncapi_search MATCH :term AND room_id IN :room_ids AND key IN :keys"
        # bm25 is lower for better matches: negated, higher is better as in PostgreSQL.
        rank = "-bm25(syncapi_search)"
        pos = "rowid"
    if before_pos is not None:
        where += f" AND {pos} < :before"
        params["before"] = before_pos
    order = f"rank DESC, {pos} DESC" if order_by_rank else f"{pos} DESC"
    stmt = text(
        f"SELECT {pos} AS pos, room_id, {rank} AS rank FROM syncapi_search WHERE {where} "
        f"ORDER BY {order} LIMIT :limit OFFSET :offset"
    ).bindparams(bindparam("room_ids", expanding=True), bindparam("keys", expanding=True))
    result = await conn.execute(stmt, params)
    return [SearchHit(int(row.pos), str(row.room_id), float(row.rank or 0.0)) for row in result]


async def count(conn: AsyncConnection, term: str, *, room_ids: Sequence[str], keys: Sequence[str]) -> int:
    """How many entries match (before visibility: the spec's approximate count)."""
    if not room_ids or not keys or not search_words(term):
        return 0
    params: dict[str, Any] = {"room_ids": list(room_ids), "keys": list(keys)}
    if conn.dialect.name == "postgresql":
        where = "vector @@ websearch_to_tsquery(:cfg, :term)"
        params.update(cfg=PG_TS_CONFIG, term=term)
    else:
        where = "syncapi_search MATCH :term"
        params["term"] = _fts5_query(term)
    stmt = text(
        f"SELECT COUNT(*) FROM syncapi_search WHERE {where} AND room_id IN :room_ids AND key IN :keys"
    ).bindparams(bindparam("room_ids", expanding=True), bindparam("keys", expanding=True))
    return int((await conn.execute(stmt, params)).scalar_one())
