"""syncapi_relations: one row per event that relates to another with a ``rel_type``
(content/client-server-api, "Forming relationships between events").

The row is written with the child event and deleted when the child is
redacted (the redaction strips ``m.relates_to``, so the relationship is
gone). A child known only as state (``state_only``) has no row: state
events get no bundled aggregations and are not served by /relations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Index,
    Table,
    Text,
    and_,
    delete,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from syncapi.storage.tables import metadata
from syncapi.storage.tables.events import events

relations = Table(
    "syncapi_relations", metadata,
    Column("event_id", Text, primary_key=True),
    Column("room_id", Text, nullable=False),
    Column("relates_to", Text, nullable=False),
    Column("rel_type", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("sender", Text, nullable=False),
    Column("depth", BigInteger, nullable=False),
    Column("stream_pos", BigInteger, nullable=False),
    Index("syncapi_relations_parent", "relates_to", "depth", "stream_pos"),
    Index("syncapi_relations_room_type", "room_id", "rel_type", "stream_pos"),
)


@dataclass(frozen=True, slots=True)
class StoredRelation:
    event_id: str
    room_id: str
    relates_to: str
    rel_type: str
    type: str
    sender: str
    depth: int
    stream_pos: int

    @classmethod
    def from_row(cls, row: Row[tuple[object, ...]]) -> StoredRelation:
        m = row._mapping
        return cls(event_id=m["event_id"], room_id=m["room_id"], relates_to=m["relates_to"],
                   rel_type=m["rel_type"], type=m["type"], sender=m["sender"], depth=int(m["depth"]),
                   stream_pos=int(m["stream_pos"]))


def insert_statement(relation: StoredRelation) -> dict[str, object]:
    return {"event_id": relation.event_id, "room_id": relation.room_id,
            "relates_to": relation.relates_to, "rel_type": relation.rel_type, "type": relation.type,
            "sender": relation.sender, "depth": relation.depth, "stream_pos": relation.stream_pos}


async def delete_relation(conn: AsyncConnection, event_id: str) -> None:
    await conn.execute(delete(relations).where(relations.c.event_id == event_id))


async def select_children(conn: AsyncConnection, parent_ids: Iterable[str], *,
                          rel_types: Sequence[str] | None = None) -> list[StoredRelation]:
    """Every relation pointing at one of the parents, in topological order."""
    ids = list(set(parent_ids))
    found: list[StoredRelation] = []
    for start in range(0, len(ids), 500):
        stmt = select(relations).where(relations.c.relates_to.in_(ids[start:start + 500]))
        if rel_types is not None:
            stmt = stmt.where(relations.c.rel_type.in_(list(rel_types)))
        found.extend(StoredRelation.from_row(row) for row in await conn.execute(stmt))
    found.sort(key=lambda r: (r.depth, r.stream_pos))
    return found


async def select_child_ids(conn: AsyncConnection, parent_ids: Iterable[str]) -> list[str]:
    ids = list(set(parent_ids))
    result: list[str] = []
    for start in range(0, len(ids), 500):
        stmt = select(relations.c.event_id).where(relations.c.relates_to.in_(ids[start:start + 500]))
        result.extend(str(row[0]) for row in await conn.execute(stmt))
    return result


async def select_page(conn: AsyncConnection, *, parent_ids: Sequence[str], room_id: str,
                      rel_type: str | None, event_type: str | None,
                      before: tuple[int, int] | None, at_or_after: tuple[int, int] | None,
                      backwards: bool, limit: int, event_ids: Sequence[str] | None = None
                      ) -> list[StoredRelation]:
    """A page of the children of ``parent_ids`` (or of the given ``event_ids``)
    in topological order, bounded by ``(depth, stream_pos)``."""
    position = tuple_(relations.c.depth, relations.c.stream_pos)
    clauses: list[ColumnElement[bool]] = [relations.c.room_id == room_id]
    if event_ids is not None:
        clauses.append(relations.c.event_id.in_(list(event_ids)))
    else:
        clauses.append(relations.c.relates_to.in_(list(parent_ids)))
    if rel_type is not None:
        clauses.append(relations.c.rel_type == rel_type)
    if event_type is not None:
        clauses.append(relations.c.type == event_type)
    if before is not None:
        clauses.append(position < tuple_(*before))
    if at_or_after is not None:
        clauses.append(position >= tuple_(*at_or_after))
    stmt = select(relations).where(and_(*clauses))
    if backwards:
        stmt = stmt.order_by(relations.c.depth.desc(), relations.c.stream_pos.desc())
    else:
        stmt = stmt.order_by(relations.c.depth.asc(), relations.c.stream_pos.asc())
    return [StoredRelation.from_row(row) for row in await conn.execute(stmt.limit(limit))]


async def select_threads(conn: AsyncConnection, room_id: str, *, before_pos: int | None, limit: int,
                         participant: str | None = None) -> list[tuple[str, int]]:
    """Thread roots of the room by their latest reply, newest first: (root event
    ID, stream position of its latest reply) with that position below
    ``before_pos``; ``participant``: only threads whose root the user sent or
    in which they replied."""
    latest = func.max(relations.c.stream_pos).label("latest")
    stmt = (select(relations.c.relates_to, latest)
            .where(relations.c.room_id == room_id, relations.c.rel_type == "m.thread")
            .group_by(relations.c.relates_to))
    if participant is not None:
        replied = (select(relations.c.relates_to)
                   .where(relations.c.room_id == room_id, relations.c.rel_type == "m.thread",
                          relations.c.sender == participant))
        root = events.alias("root")
        stmt = (stmt.select_from(relations.outerjoin(root, root.c.event_id == relations.c.relates_to))
                .where(or_(root.c.sender == participant, relations.c.relates_to.in_(replied))))
    if before_pos is not None:
        stmt = stmt.having(latest < before_pos)
    stmt = stmt.order_by(latest.desc()).limit(limit)
    return [(str(row[0]), int(row[1])) for row in await conn.execute(stmt)]
