"""The client API's storage facade."""

from __future__ import annotations

import logging
import time

from sqlalchemy.ext.asyncio import AsyncConnection

from clientapi.storage.tables.reports import EventReport, ReportsTable, RoomReport, UserReport
from clientapi.storage.tables.room_directory import RoomDirectoryTable, room_directory
from clientapi.storage.tables.transactions import (
    TransactionRow,
    TransactionsTable,
    transactions,
)
from common.storage import Database

__all__ = ["TRANSACTION_TTL_MS", "ClientAPIDatabase", "TransactionRow"]

logger = logging.getLogger(__name__)

# How long a transaction ID is remembered. Clients retry within seconds or
# minutes; a day covers a phone that was offline overnight.
TRANSACTION_TTL_MS = 24 * 60 * 60 * 1000
# Expired rows are deleted at most this often, on a write.
_PURGE_INTERVAL_MS = 10 * 60 * 1000

def _now_ms() -> int:
    return int(time.time() * 1000)


class ClientAPIDatabase:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._transactions = TransactionsTable()
        self._directory = RoomDirectoryTable()
        self._reports = ReportsTable()
        self._last_purge_ms = 0

    async def get_transaction(self, user_id: str, device_id: str, endpoint: str,
                              txn_id: str) -> TransactionRow | None:
        """What an unexpired transaction produced, if anything."""
        async with self.db.connect() as conn:
            found = await self._transactions.select(
                conn, user_id, device_id, endpoint, txn_id, _now_ms() - TRANSACTION_TTL_MS)
        return found

    async def store_transaction(self, user_id: str, device_id: str, endpoint: str, txn_id: str,
                                event_id: str, *, pending: bool = False, room_version: str | None = None,
                                event_json: str | None = None) -> None:
        now = _now_ms()
        async with self.db.transaction() as conn:
            await self._purge(conn, now)
            # An expired row with the same key may still be there: replace it.
            await conn.execute(self.db.upsert(
                transactions,
                {"user_id": user_id, "device_id": device_id, "endpoint": endpoint, "txn_id": txn_id,
                 "event_id": event_id, "created_ts": now, "pending": pending, "room_version": room_version,
                 "event_json": event_json},
                ["user_id", "device_id", "endpoint", "txn_id"]))

    async def _purge(self, conn: AsyncConnection, now: int) -> None:
        if now - self._last_purge_ms >= _PURGE_INTERVAL_MS:
            self._last_purge_ms = now
            await self._transactions.delete_older_than(conn, now - TRANSACTION_TTL_MS)

    # -- the published room directory -------------------------------------------

    async def set_room_published(self, room_id: str, published: bool) -> None:
        async with self.db.transaction() as conn:
            if published:
                await conn.execute(self.db.insert_or_ignore(
                    room_directory, {"room_id": room_id, "published_ts": _now_ms()}, ["room_id"]))
            else:
                await self._directory.delete(conn, room_id)

    async def is_room_published(self, room_id: str) -> bool:
        async with self.db.connect() as conn:
            return await self._directory.contains(conn, room_id)

    async def published_rooms(self) -> list[str]:
        async with self.db.connect() as conn:
            return await self._directory.select_all(conn)

    # -- reports ----------------------------------------------------------------

    async def store_event_report(self, report: EventReport) -> None:
        async with self.db.transaction() as conn:
            await self._reports.insert_event_report(conn, report)

    async def store_room_report(self, report: RoomReport) -> None:
        async with self.db.transaction() as conn:
            await self._reports.insert_room_report(conn, report)

    async def store_user_report(self, report: UserReport) -> None:
        async with self.db.transaction() as conn:
            await self._reports.insert_user_report(conn, report)

    async def user_reports(self) -> list[UserReport]:
        async with self.db.connect() as conn:
            return await self._reports.select_user_reports(conn)

    async def event_reports(self) -> list[EventReport]:
        async with self.db.connect() as conn:
            return await self._reports.select_event_reports(conn)

    async def room_reports(self) -> list[RoomReport]:
        async with self.db.connect() as conn:
            return await self._reports.select_room_reports(conn)
