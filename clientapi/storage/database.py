"""The client API's storage facade."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from sqlalchemy import Insert, bindparam
from sqlalchemy.ext.asyncio import AsyncConnection

from clientapi.storage.tables.reports import EventReport, ReportsTable, RoomReport, UserReport
from clientapi.storage.tables.room_directory import RoomDirectoryTable, room_directory
from clientapi.storage.tables.transactions import (
    Claim,
    TransactionRow,
    TransactionsTable,
    asyncpg_connection,
    transactions,
)
from common.prebuilt import PrebuiltStatement
from common.storage import Database

__all__ = ["TRANSACTION_TTL_MS", "ClientAPIDatabase", "TransactionRow"]

logger = logging.getLogger(__name__)

# How long a transaction ID is remembered. Clients retry within seconds or
# minutes; a day covers a phone that was offline overnight.
TRANSACTION_TTL_MS = 24 * 60 * 60 * 1000
# Expired rows are deleted at most this often, on a write.
_PURGE_INTERVAL_MS = 10 * 60 * 1000
# How long transactions marked done wait to be written together, in a write
# transaction of their own; a claim group writes them on its way only when
# this many are waiting (one statement fewer for the other groups, and a
# marked row only drops the JSON kept for a retry, which is harmless to keep).
_DONE_FLUSH_DELAY_SECONDS = 1.0
_DONE_WRITTEN_WITH_CLAIMS_AT = 256
# Claims written by one statement at most (9 parameters each; SQLite allows 32,766).
_CLAIM_CHUNK = 500

TransactionKey = tuple[str, str, str, str]

_CLAIM_COLUMNS = ("user_id", "device_id", "endpoint", "txn_id", "event_id", "created_ts", "pending",
                  "room_version", "event_json")


@dataclasses.dataclass
class _Claim:
    key: TransactionKey
    event_id: str
    room_version: str
    event_json: str
    answer: asyncio.Future[TransactionRow | None]


def _postgres_error() -> type[Exception]:
    """What asyncpg raises for an error the server reported (the connection
    is still good)."""
    import asyncpg
    error: type[Exception] = asyncpg.PostgresError
    return error


def _now_ms() -> int:
    return int(time.time() * 1000)


class ClientAPIDatabase:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._transactions = TransactionsTable()
        self._directory = RoomDirectoryTable()
        self._reports = ReportsTable()
        self._last_purge_ms = 0
        # Transactions marked done and not yet written so (see mark_transaction_done).
        self._done: set[TransactionKey] = set()
        self._done_flush: asyncio.Task[None] | None = None
        # Claims waiting to be written, and the task writing them (see claim_transaction).
        self._claims: list[_Claim] = []
        self._claimer: asyncio.Task[None] | None = None
        self._claim_insert: Insert | None = None
        self._claim_prebuilt: PrebuiltStatement | None = None

    async def get_transaction(self, user_id: str, device_id: str, endpoint: str,
                              txn_id: str) -> TransactionRow | None:
        """What an unexpired transaction produced, if anything."""
        async with self.db.connect() as conn:
            found = await self._transactions.select(
                conn, user_id, device_id, endpoint, txn_id, _now_ms() - TRANSACTION_TTL_MS)
        return self._as_marked((user_id, device_id, endpoint, txn_id), found)

    def _as_marked(self, key: TransactionKey, found: TransactionRow | None) -> TransactionRow | None:
        if found is not None and key in self._done:
            return dataclasses.replace(found, pending=False, event_json=None)
        return found

    async def store_transaction(self, user_id: str, device_id: str, endpoint: str, txn_id: str,
                                event_id: str, *, pending: bool = False, room_version: str | None = None,
                                event_json: str | None = None) -> None:
        now = _now_ms()
        key = (user_id, device_id, endpoint, txn_id)
        async with self.db.transaction() as conn:
            await self._write_done(conn)
            await self._purge(conn, now)
            # An expired row with the same key may still be there: replace it.
            await conn.execute(self.db.upsert(
                transactions,
                {"user_id": user_id, "device_id": device_id, "endpoint": endpoint, "txn_id": txn_id,
                 "event_id": event_id, "created_ts": now, "pending": pending, "room_version": room_version,
                 "event_json": event_json},
                ["user_id", "device_id", "endpoint", "txn_id"]))
        self._done.discard(key)

    async def claim_transaction(self, user_id: str, device_id: str, endpoint: str, txn_id: str,
                                event_id: str, room_version: str, event_json: str) -> TransactionRow | None:
        """Records the event as the transaction's pending send, unless the
        transaction already has an unexpired row: then that row is answered
        and nothing is written. The common case (a new transaction ID) is one
        statement, an insert that replaces only an expired row; claims made
        while another is being written are written together, in one write
        transaction (group commit), and answered once it committed."""
        claim = _Claim((user_id, device_id, endpoint, txn_id), event_id, room_version, event_json,
                       asyncio.get_running_loop().create_future())
        self._claims.append(claim)
        if self._claimer is None or self._claimer.done():
            self._claimer = asyncio.create_task(self._write_claims())
        return await claim.answer

    async def _write_claims(self) -> None:
        group: list[_Claim] = []
        try:
            while self._claims:
                group, self._claims = self._claims, []
                try:
                    answers = await self._claim_group(group)
                except Exception as e:
                    if len(group) == 1:
                        self._fail(group[0], e)
                        continue
                    # One bad claim must not fail the others: each on its own.
                    logger.warning("writing %d transaction claims together failed; one by one",
                                   len(group), exc_info=True)
                    for claim in group:
                        try:
                            self._answer(claim, (await self._claim_group([claim]))[0])
                        except Exception as one_failed:
                            self._fail(claim, one_failed)
                    continue
                for claim, answer in zip(group, answers, strict=True):
                    self._answer(claim, answer)
        except BaseException as e:
            # Cancelled (closing): nobody may wait forever.
            for claim in [*group, *self._claims]:
                self._fail(claim, RuntimeError(f"transaction claim not written: {e!r}"))
            self._claims = []
            raise

    @staticmethod
    def _answer(claim: _Claim, answer: TransactionRow | None) -> None:
        if not claim.answer.done():
            claim.answer.set_result(answer)

    @staticmethod
    def _fail(claim: _Claim, error: Exception) -> None:
        if not claim.answer.done():
            claim.answer.set_exception(error)

    async def _claim_group(self, group: list[_Claim]) -> list[TransactionRow | None]:
        now = _now_ms()
        cutoff = now - TRANSACTION_TTL_MS
        if self.db.dialect_name == "postgresql":
            on_postgres = await self._claim_group_postgres(group, now, cutoff)
            if on_postgres is not None:
                return on_postgres
        answers: list[TransactionRow | None] = []
        claimed: list[TransactionKey] = []
        async with self.db.transaction() as conn:
            if len(self._done) >= _DONE_WRITTEN_WITH_CLAIMS_AT:
                await self._write_done(conn)
            await self._purge(conn, now)
            inserted = await self._insert_claims(conn, group, now, cutoff)
            for claim, written in zip(group, inserted, strict=True):
                if written:
                    claimed.append(claim.key)
                    answers.append(None)
                else:
                    earlier = await self._transactions.select(conn, *claim.key, cutoff)
                    answers.append(self._as_marked(claim.key, earlier))
        self._done.difference_update(claimed)
        return answers

    async def _claim_group_postgres(self, group: list[_Claim], now: int,
                                    cutoff: int) -> list[TransactionRow | None] | None:
        """``_claim_group`` on asyncpg: the claims are one statement outside
        a transaction (one round trip; see ``_CLAIM_POSTGRES``); the rare
        chores (marking many done, purging) are transactions of their own
        first. None on another driver."""
        if len(self._done) >= _DONE_WRITTEN_WITH_CLAIMS_AT:
            await self.flush_done()
        if now - self._last_purge_ms >= _PURGE_INTERVAL_MS:
            async with self.db.transaction() as conn:
                await self._purge(conn, now)
        claims = [Claim(*c.key, c.event_id, c.room_version, c.event_json) for c in group]
        keys = [c.key for c in group]
        async with self.db.connect() as conn:
            raw = await asyncpg_connection(conn)
            if raw is None:
                return None
            try:
                if len(set(keys)) == len(keys):
                    written_keys = await self._transactions.claim_many_postgres(raw, claims, now, cutoff)
                    written = [key in written_keys for key in keys]
                else:
                    # One statement may not touch a row twice: one by one.
                    written = [bool(await self._transactions.claim_many_postgres(raw, [one], now, cutoff))
                               for one in claims]
            except BaseException as error:
                if not isinstance(error, Exception) or not isinstance(error, _postgres_error()):
                    # Lost or interrupted mid-statement: not to be used again.
                    await conn.invalidate()
                raise
            answers: list[TransactionRow | None] = []
            for claim, was_written in zip(group, written, strict=True):
                if was_written:
                    answers.append(None)
                else:
                    earlier = await self._transactions.select(conn, *claim.key, cutoff)
                    answers.append(self._as_marked(claim.key, earlier))
        self._done.difference_update(key for key, was_written in zip(keys, written, strict=True) if was_written)
        return answers

    async def _insert_claims(self, conn: AsyncConnection, group: list[_Claim], now: int,
                             cutoff: int) -> list[bool]:
        """Inserts the group's rows (replacing only expired ones) with one
        prebuilt statement run over every row (the dialect sends them as
        multi-row VALUES, from a compiled statement it keeps); answers for
        each claim whether it was written. A key twice in the group (never,
        while a key's sends are serialised) goes one by one: one statement
        may not touch a row twice."""
        statement = self._claim_statement()
        if PrebuiltStatement.runs_inline(conn):
            # SQLite on the loop's thread: a row at a time, each a few
            # microseconds without SQLAlchemy's machinery (common/prebuilt.py).
            assert self._claim_prebuilt is not None
            return [bool(await self._claim_prebuilt.rows(conn, self._claim_row(c, now, cutoff))) for c in group]
        keys = [claim.key for claim in group]
        chunks = [group[i:i + _CLAIM_CHUNK] for i in range(0, len(group), _CLAIM_CHUNK)]
        if len(set(keys)) != len(keys):
            chunks = [[claim] for claim in group]
        written: list[bool] = []
        for chunk in chunks:
            rows = [self._claim_row(c, now, cutoff) for c in chunk]
            result = await conn.execute(statement, rows)
            inserted = {(row.user_id, row.device_id, row.endpoint, row.txn_id) for row in result}
            written.extend(c.key in inserted for c in chunk)
        return written

    @staticmethod
    def _claim_row(claim: _Claim, now: int, cutoff: int) -> dict[str, Any]:
        return {"user_id": claim.key[0], "device_id": claim.key[1], "endpoint": claim.key[2],
                "txn_id": claim.key[3], "event_id": claim.event_id, "created_ts": now, "pending": True,
                "room_version": claim.room_version, "event_json": claim.event_json, "cutoff": cutoff}

    def _claim_statement(self) -> Insert:
        """The claim insert, built once: a statement built per call (rows
        given as VALUES) has no cache key and was compiled on every send."""
        if self._claim_insert is None:
            self._claim_insert = self.db.upsert(
                transactions, {name: bindparam(name) for name in _CLAIM_COLUMNS},
                ["user_id", "device_id", "endpoint", "txn_id"],
                where=transactions.c.created_ts < bindparam("cutoff")).returning(
                    transactions.c.user_id, transactions.c.device_id, transactions.c.endpoint,
                    transactions.c.txn_id)
            self._claim_prebuilt = PrebuiltStatement(self._claim_insert, _CLAIM_COLUMNS)
        return self._claim_insert

    async def _purge(self, conn: AsyncConnection, now: int) -> None:
        if now - self._last_purge_ms >= _PURGE_INTERVAL_MS:
            self._last_purge_ms = now
            await self._transactions.delete_older_than(conn, now - TRANSACTION_TTL_MS)

    async def mark_transaction_done(self, user_id: str, device_id: str, endpoint: str, txn_id: str) -> None:
        """See ``note_transaction_done``."""
        self.note_transaction_done(user_id, device_id, endpoint, txn_id)

    def note_transaction_done(self, user_id: str, device_id: str, endpoint: str, txn_id: str) -> None:
        """The send finished: its row stops being pending and drops the event
        JSON kept for a retry. Readers here see it at once; it is written
        within a second, together with the others marked meanwhile (or by a
        claim group when many wait): a crash before that leaves the row
        pending, so a retry inputs the same event again, which the room
        server answers as a duplicate."""
        self._done.add((user_id, device_id, endpoint, txn_id))
        if self._done_flush is None or self._done_flush.done():
            self._done_flush = asyncio.create_task(self._flush_done_later())

    async def _flush_done_later(self) -> None:
        await asyncio.sleep(_DONE_FLUSH_DELAY_SECONDS)
        try:
            await self.flush_done()
        except Exception:
            logger.warning("could not mark transactions done; the next write will", exc_info=True)

    async def flush_done(self) -> None:
        """Writes the transactions marked done (see ``mark_transaction_done``)."""
        if not self._done:
            return
        async with self.db.transaction() as conn:
            await self._write_done(conn)

    async def _write_done(self, conn: AsyncConnection) -> None:
        done = list(self._done)
        if done:
            await self._transactions.mark_done_many(conn, done)
            self._done.difference_update(done)

    async def forget_transaction(self, user_id: str, device_id: str, endpoint: str, txn_id: str) -> None:
        async with self.db.transaction() as conn:
            await self._transactions.delete(conn, user_id, device_id, endpoint, txn_id)
        self._done.discard((user_id, device_id, endpoint, txn_id))

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
