"""Transaction-ID claims made at the same time are written together (one
write transaction for the group), each answered as if alone; marking a
transaction done is visible at once and written by the next write."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from unittest import mock

from sqlalchemy import event, select
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.engine.interfaces import CacheStats

from clientapi.storage.database import _DONE_FLUSH_DELAY_SECONDS, ClientAPIDatabase, TransactionRow
from clientapi.storage.tables.transactions import TransactionsTable, transactions
from common import storage
from common.storage import open_database


async def test_concurrent_claims_share_a_write_and_keep_their_answers(tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'clientapi.db'}", "clientapi")
    begins: list[str] = []
    event.listen(db.engine.sync_engine, "begin", lambda conn: begins.append("begin"))
    try:
        store = ClientAPIDatabase(db)
        assert await store.claim_transaction("@a:x", "D", "send", "old", "$old", "12", "{}") is None
        begins.clear()
        keys = [("@a:x", "D", "send", f"t{i}") for i in range(10)]
        answers = await asyncio.gather(
            *(store.claim_transaction(*key, f"$e{i}", "12", f'{{"n":{i}}}') for i, key in enumerate(keys)),
            store.claim_transaction("@a:x", "D", "send", "old", "$again", "12", "{}"))
        assert answers[:10] == [None] * 10
        assert answers[10] == TransactionRow("$old", True, "12", "{}")
        assert len(begins) < 5, "the claims were not written together"
        for i, key in enumerate(keys):
            assert await store.get_transaction(*key) == TransactionRow(f"$e{i}", True, "12", f'{{"n":{i}}}')

        # Done at once for readers; in the table once the marks are written
        # together (not by each claim group: one statement fewer for them).
        await store.mark_transaction_done(*keys[0])
        assert await store.get_transaction(*keys[0]) == TransactionRow("$e0", False, "12", None)
        assert await store.claim_transaction("@a:x", "D", "send", "next", "$n", "12", "{}") is None
        assert await store.get_transaction(*keys[0]) == TransactionRow("$e0", False, "12", None)

        async def stored(txn_id: str) -> tuple[bool, str | None]:
            async with db.connect() as conn:
                row = (await conn.execute(select(transactions.c.pending, transactions.c.event_json).where(
                    transactions.c.txn_id == txn_id))).one()
            return bool(row.pending), row.event_json

        assert await stored("t0") == (True, '{"n":0}')
        begins.clear()
        for key in keys[1:]:
            await store.mark_transaction_done(*key)
        await asyncio.sleep(_DONE_FLUSH_DELAY_SECONDS + 0.5)
        assert len(begins) == 1, "the marks were not written together"
        assert [await stored(f"t{i}") for i in range(10)] == [(False, None)] * 10
    finally:
        await db.close()


async def test_a_group_of_claims_is_one_insert_and_replaces_only_expired_rows(database_url: str) -> None:
    db = await open_database(database_url, "clientapi")
    # On the inline SQLite driver the claims run on its own cursor, a row at
    # a time (common/prebuilt.py), with no execution context: there a group
    # is one write transaction; elsewhere one multi-row insert.
    inline = db.dialect_name == "sqlite" and storage.SQLITE_DRIVER == "inline"
    # On PostgreSQL (asyncpg) a group is one statement run by asyncpg outside
    # a transaction: no BEGIN, no COMMIT (clientapi/storage/tables/transactions.py).
    on_postgres = db.dialect_name == "postgresql"
    postgres_claims: list[int] = []
    claim_many_postgres = TransactionsTable.claim_many_postgres

    async def counted(table: TransactionsTable, asyncpg_conn: Any, claims: Any, now: int, cutoff: int) -> Any:
        postgres_claims.append(len(claims))
        return await claim_many_postgres(table, asyncpg_conn, claims, now, cutoff)
    begins: list[str] = []
    event.listen(db.engine.sync_engine, "begin", lambda conn: begins.append("begin"))
    inserts: list[str] = []
    # Whether each claim insert was compiled anew: it is built once, so only
    # its first run with one row and its first with several are.
    compiled_anew: list[bool] = []

    def seen(conn: object, cursor: object, statement: str, parameters: object,
             context: DefaultExecutionContext | None, executemany: bool) -> None:
        if statement.startswith("INSERT INTO clientapi_transactions"):
            inserts.append(statement)
            if "RETURNING" in statement and context is not None:  # a claim's, not store_transaction's
                compiled_anew.append(context.cache_hit is not CacheStats.CACHE_HIT)

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    patched = mock.patch.object(TransactionsTable, "claim_many_postgres", counted)
    patched.start()
    try:
        store = ClientAPIDatabase(db)
        await store.store_transaction("@a:x", "D", "send", "live", "$live", pending=True, room_version="12",
                                      event_json="{}")
        await store.store_transaction("@a:x", "D", "send", "expired", "$expired")
        async with db.transaction() as conn:
            await conn.execute(transactions.update().where(transactions.c.txn_id == "expired")
                               .values(created_ts=0))
        inserts.clear()
        begins.clear()
        answers = await asyncio.gather(
            store.claim_transaction("@a:x", "D", "send", "expired", "$new0", "12", "{}"),
            store.claim_transaction("@a:x", "D", "send", "live", "$new1", "12", "{}"),
            *(store.claim_transaction("@a:x", "D", "send", f"n{i}", f"$n{i}", "12", "{}") for i in range(5)))
        assert answers[0] is None  # the expired row was replaced
        assert answers[1] == TransactionRow("$live", True, "12", "{}")
        assert answers[2:] == [None] * 5
        # The first claim alone, then the rest together.
        if inline:
            assert len(inserts) == 7 and 1 <= len(begins) <= 2, begins
        elif on_postgres:
            assert sum(postgres_claims) == 7 and len(postgres_claims) <= 2, postgres_claims
            # The only transaction: reading the live row the claim did not replace.
            assert len(begins) <= 1, begins
        else:
            assert len(inserts) <= 2, inserts
        assert await store.get_transaction("@a:x", "D", "send", "expired") == TransactionRow(
            "$new0", True, "12", "{}")
        assert await store.get_transaction("@a:x", "D", "send", "live") == TransactionRow(
            "$live", True, "12", "{}")

        # The same key twice in one group (not made by the client API, which
        # serialises a key's sends): claimed once, the second answered the first.
        twice = await asyncio.gather(
            store.claim_transaction("@a:x", "D", "send", "dup", "$d1", "12", "{}"),
            store.claim_transaction("@a:x", "D", "send", "dup", "$d2", "12", "{}"),
            store.claim_transaction("@a:x", "D", "send", "other", "$o", "12", "{}"))
        assert twice[0] is None or twice[1] is None
        assert TransactionRow("$d1", True, "12", "{}") in twice or TransactionRow("$d2", True, "12", "{}") in twice
        assert twice[2] is None
        if not inline and not on_postgres:
            assert len(compiled_anew) >= 4 and sum(compiled_anew) <= 2, "claim inserts were compiled anew"
    finally:
        patched.stop()
        await db.close()
