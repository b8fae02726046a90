"""Transaction-ID claims made at the same time are written together (one
write transaction for the group), each answered as if alone; marking a
transaction done is visible at once and written by the next write."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import event, select

from clientapi.storage.database import ClientAPIDatabase, TransactionRow
from clientapi.storage.tables.transactions import transactions
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

        # Done at once for readers; in the table after the next write.
        await store.mark_transaction_done(*keys[0])
        assert await store.get_transaction(*keys[0]) == TransactionRow("$e0", False, "12", None)
        assert await store.claim_transaction("@a:x", "D", "send", "next", "$n", "12", "{}") is None
        async with db.connect() as conn:
            row = (await conn.execute(select(transactions.c.pending, transactions.c.event_json).where(
                transactions.c.txn_id == "t0"))).one()
        assert (row.pending, row.event_json) == (False, None)
    finally:
        await db.close()
