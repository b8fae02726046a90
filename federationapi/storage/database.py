"""The federation API's storage facade: every method is one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from sqlalchemy import ColumnClause, literal_column, or_

from common.storage import Database
from federationapi.storage.tables.inbound_transactions import InboundTransactionsTable, inbound_transactions
from federationapi.storage.tables.server_keys import ServerKeyRow, ServerKeysTable, server_keys

__all__ = ["FederationDatabase", "ServerKeyRow"]


class FederationDatabase:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._server_keys = ServerKeysTable()
        self._inbound_transactions = InboundTransactionsTable()

    async def get_server_keys(self, server_name: str,
                              key_ids: Sequence[str] | None = None) -> list[ServerKeyRow]:
        async with self.db.connect() as conn:
            return await self._server_keys.select_for_server(conn, server_name, key_ids)

    async def store_server_keys(self, rows: Sequence[ServerKeyRow]) -> None:
        """Stores keys from one response, replacing what was stored for the
        same key IDs when the response is at least as fresh."""
        if not rows:
            return
        # A stale answer (a notary's old cache) must not shorten what a
        # fresher one said, unless it retires the key.
        proposed_until: ColumnClause[int] = literal_column("excluded.valid_until_ts")
        proposed_expired: ColumnClause[int] = literal_column("excluded.expired_ts")
        fresher = or_(server_keys.c.valid_until_ts <= proposed_until, proposed_expired.is_not(None))
        async with self.db.transaction() as conn:
            await conn.execute(self.db.upsert(server_keys, [asdict(row) for row in rows],
                                              ["server_name", "key_id"], where=fresher))

    async def get_inbound_transaction(self, origin: str, txn_id: str) -> str | None:
        """The JSON answered to the origin's transaction, if it was processed."""
        async with self.db.connect() as conn:
            return await self._inbound_transactions.select_response(conn, origin, txn_id)

    async def store_inbound_transaction(self, origin: str, txn_id: str, response_json: str,
                                        received_ts: int) -> None:
        """Records the answer; a concurrent duplicate keeps the first one."""
        row = {"origin": origin, "txn_id": txn_id, "response_json": response_json, "received_ts": received_ts}
        async with self.db.transaction() as conn:
            await conn.execute(self.db.upsert(inbound_transactions, row, ["origin", "txn_id"], set_=[]))

    async def delete_inbound_transactions_before(self, before_ts: int) -> int:
        async with self.db.transaction() as conn:
            return await self._inbound_transactions.delete_older_than(conn, before_ts)

    async def close(self) -> None:
        await self.db.close()
