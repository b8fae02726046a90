"""The federation API's storage facade: every method is one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from common.storage import Database
from federationapi.storage.tables.server_keys import ServerKeyRow, ServerKeysTable, server_keys

__all__ = ["FederationDatabase", "ServerKeyRow"]


class FederationDatabase:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._server_keys = ServerKeysTable()

    async def get_server_keys(self, server_name: str,
                              key_ids: Sequence[str] | None = None) -> list[ServerKeyRow]:
        async with self.db.connect() as conn:
            return await self._server_keys.select_for_server(conn, server_name, key_ids)

    async def store_server_keys(self, rows: Sequence[ServerKeyRow]) -> None:
        """Stores keys from one response, replacing what was stored for the
        same key IDs (a newer response knows better)."""
        if not rows:
            return
        async with self.db.transaction() as conn:
            await conn.execute(self.db.upsert(server_keys, [asdict(row) for row in rows],
                                              ["server_name", "key_id"]))

    async def close(self) -> None:
        await self.db.close()
