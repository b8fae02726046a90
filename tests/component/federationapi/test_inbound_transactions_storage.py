"""federationapi_inbound_transactions: the stored answers of /send."""

from __future__ import annotations

from tests.component.federationapi.conftest import Harness, on_each_database


@on_each_database
async def test_inbound_transaction_answer_is_kept_once(harness: Harness) -> None:
    db = harness.database
    assert await db.get_inbound_transaction("remote.test", "t1") is None
    await db.store_inbound_transaction("remote.test", "t1", '{"pdus": {}}', 1000)
    # A concurrent duplicate does not replace the first answer.
    await db.store_inbound_transaction("remote.test", "t1", '{"pdus": {"$x": {}}}', 2000)
    assert await db.get_inbound_transaction("remote.test", "t1") == '{"pdus": {}}'
    # Keyed by origin too.
    assert await db.get_inbound_transaction("other.test", "t1") is None
    assert await db.delete_inbound_transactions_before(1001) == 1
    assert await db.get_inbound_transaction("remote.test", "t1") is None
