"""The federation sender's storage facade: every method is one transaction.

Tables (federationapi/storage/tables/): ``sender_rooms`` (each room's last
handled output position), ``joined_hosts`` (who is joined where),
``queue`` and ``queue_json`` (each destination's outgoing PDUs and EDUs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from common.storage import Database
from federationapi.storage.tables.joined_hosts import JoinedHostsTable
from federationapi.storage.tables.queue import EDU, PDU, QueueEntry, QueueTable
from federationapi.storage.tables.queue_json import QueueJSONTable
from federationapi.storage.tables.sender_rooms import SenderRoomsTable


@dataclass(frozen=True)
class JoinedMember:
    """A member event with membership "join" in a room's current state."""

    event_id: str
    user_id: str
    server_name: str


@dataclass(frozen=True)
class OutgoingPDU:
    event_id: str
    pdu_json: str
    # Servers that get the event besides those joined to the room (the
    # server of a remote user the membership event is about).
    extra_destinations: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RoomWrite:
    # Where the entry's PDU was queued.
    destinations: list[str]
    # Whether servers other than ours are joined to the room now.
    has_other_servers: bool


@dataclass(frozen=True)
class QueuedItem:
    position: int
    kind: str
    event_id: str | None
    json_text: str


@dataclass(frozen=True)
class PendingTransaction:
    txn_id: str
    items: list[QueuedItem]

    @property
    def positions(self) -> list[int]:
        return [item.position for item in self.items]


class SenderDatabase:
    def __init__(self, db: Database, server_name: str) -> None:
        self.db = db
        self.server_name = server_name
        self._rooms = SenderRoomsTable()
        self._joined = JoinedHostsTable()
        self._queue = QueueTable()
        self._json = QueueJSONTable()

    # -- rooms ---------------------------------------------------------------

    async def room_position(self, room_id: str) -> int | None:
        async with self.db.connect() as conn:
            return await self._rooms.select_position(conn, room_id)

    async def write_room_event(self, room_id: str, position: int, *, joined: Sequence[JoinedMember],
                               left_event_ids: Iterable[str], reset_members: Sequence[JoinedMember] | None = None,
                               pdu: OutgoingPDU | None = None) -> RoomWrite | None:
        """Applies one output entry: the members that joined and the member
        events that left the current state (or, with ``reset_members``, the
        room's whole joined membership first), and queues ``pdu`` for every
        other joined server. Answers where it was queued and whether other
        servers are in the room now, or None when the entry was handled
        before (a replay after a crash: nothing is queued twice)."""
        async with self.db.transaction() as conn:
            handled = await self._rooms.select_position(conn, room_id)
            if handled is not None and position <= handled:
                return None
            if reset_members is not None:
                await self._joined.delete_room(conn, room_id)
                await self._joined.insert(self.db, conn, [(room_id, m.event_id, m.user_id, m.server_name)
                                                          for m in reset_members])
            await self._joined.delete_events(conn, room_id, left_event_ids)
            await self._joined.insert(self.db, conn, [(room_id, m.event_id, m.user_id, m.server_name)
                                                      for m in joined])
            await self._rooms.upsert_position(self.db, conn, room_id, position)
            others = await self._joined.select_servers_in_room(conn, room_id) - {self.server_name}
            if pdu is None:
                return RoomWrite([], bool(others))
            destinations = sorted((others | pdu.extra_destinations) - {self.server_name})
            if destinations:
                nid = await self._json.insert(conn, pdu.pdu_json)
                await self._queue.insert(conn, [{"destination": d, "kind": PDU, "json_nid": nid,
                                                 "event_id": pdu.event_id} for d in destinations])
            return RoomWrite(destinations, bool(others))

    async def servers_in_room(self, room_id: str) -> set[str]:
        async with self.db.connect() as conn:
            return await self._joined.select_servers_in_room(conn, room_id)

    async def servers_sharing_rooms_with(self, user_id: str) -> set[str]:
        async with self.db.connect() as conn:
            return await self._joined.select_servers_sharing_rooms_with(conn, user_id)

    # -- the queue -----------------------------------------------------------

    async def queue_edu(self, destinations: Iterable[str], edu_json: str, *, coalesce_key: str | None = None,
                        expires_ts: int | None = None) -> list[str]:
        """Queues one EDU for each of ``destinations`` (not us); with
        ``coalesce_key``, replacing the same key's EDU that has not gone out
        yet. Answers the destinations queued to."""
        targets = sorted(set(destinations) - {self.server_name})
        if not targets:
            return []
        async with self.db.transaction() as conn:
            superseded: list[int] = []
            if coalesce_key is not None:
                superseded = await self._queue.delete_superseded(conn, targets, coalesce_key)
            nid = await self._json.insert(conn, edu_json)
            await self._queue.insert(conn, [{"destination": d, "kind": EDU, "json_nid": nid,
                                             "coalesce_key": coalesce_key, "expires_ts": expires_ts}
                                            for d in targets])
            await self._json.delete_unreferenced(conn, superseded)
        return targets

    async def next_transaction(self, destination: str, now_ms: int, *, max_pdus: int, max_edus: int,
                               new_txn_id: str, single: bool = False) -> PendingTransaction | None:
        """The destination's next transaction: the one already begun (same
        ID, same contents) if any, else the oldest queued entries (at most
        ``max_pdus`` PDUs and ``max_edus`` EDUs; with ``single``, only the
        oldest PDU or else the oldest EDU) under ``new_txn_id``. None when
        nothing is queued."""
        async with self.db.transaction() as conn:
            entries = await self._queue.select_in_txn(conn, destination)
            if entries:
                txn_id = entries[0].txn_id
                assert txn_id is not None
                # Entries of one transaction only: whatever else was marked
                # (never, by construction) waits for the next one.
                entries = [e for e in entries if e.txn_id == txn_id]
            else:
                expired = await self._queue.delete_expired(conn, destination, now_ms)
                await self._json.delete_unreferenced(conn, expired)
                if single:
                    entries = await self._queue.select_next(conn, destination, PDU, 1)
                    if not entries:
                        entries = await self._queue.select_next(conn, destination, EDU, 1)
                else:
                    entries = (await self._queue.select_next(conn, destination, PDU, max_pdus)
                               + await self._queue.select_next(conn, destination, EDU, max_edus))
                if not entries:
                    return None
                txn_id = new_txn_id
                await self._queue.assign_txn(conn, [e.position for e in entries], txn_id)
            texts = await self._json.select(conn, [e.json_nid for e in entries])
        entries.sort(key=lambda e: e.position)
        return PendingTransaction(txn_id, [QueuedItem(e.position, e.kind, e.event_id, texts[e.json_nid])
                                           for e in entries])

    async def complete_transaction(self, destination: str, positions: Sequence[int]) -> None:
        """The destination accepted (or definitively refused) these entries."""
        async with self.db.transaction() as conn:
            wanted = set(positions)
            nids = [e.json_nid for e in await self._queue.select_in_txn(conn, destination) if e.position in wanted]
            await self._queue.delete_positions(conn, positions)
            await self._json.delete_unreferenced(conn, nids)

    async def release_transaction(self, positions: Sequence[int]) -> None:
        """Puts the entries back in the queue, no longer in a transaction."""
        async with self.db.transaction() as conn:
            await self._queue.assign_txn(conn, positions, None)

    async def destinations_with_queue(self) -> list[str]:
        async with self.db.connect() as conn:
            return await self._queue.select_destinations(conn)

    async def queued_count(self, destination: str | None = None) -> int:
        async with self.db.connect() as conn:
            return await self._queue.count(conn, destination)


__all__ = ["JoinedMember", "OutgoingPDU", "PendingTransaction", "QueueEntry", "QueuedItem", "RoomWrite",
           "SenderDatabase"]
