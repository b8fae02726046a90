"""federationapi_server_keys: remote servers' verify keys, with their validity
and the signed response each came in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from federationapi.storage.tables import METADATA

server_keys = Table(
    "federationapi_server_keys",
    METADATA,
    Column("server_name", Text, primary_key=True),
    Column("key_id", Text, primary_key=True),
    Column("verify_key", Text, nullable=False),
    Column("valid_until_ts", BigInteger, nullable=False),
    Column("expired_ts", BigInteger, nullable=True),
    Column("fetched_ts", BigInteger, nullable=False),
    Column("response_json", Text, nullable=False),
)


@dataclass(frozen=True)
class ServerKeyRow:
    server_name: str
    key_id: str
    verify_key: str
    valid_until_ts: int
    expired_ts: int | None
    fetched_ts: int
    response_json: str


class ServerKeysTable:
    async def select_for_server(self, conn: AsyncConnection, server_name: str,
                                key_ids: Sequence[str] | None = None) -> list[ServerKeyRow]:
        """The server's stored keys; all of them when ``key_ids`` is None."""
        query = select(server_keys).where(server_keys.c.server_name == server_name)
        if key_ids is not None:
            query = query.where(server_keys.c.key_id.in_(list(key_ids)))
        rows = (await conn.execute(query.order_by(server_keys.c.key_id))).all()
        return [ServerKeyRow(r.server_name, r.key_id, r.verify_key, r.valid_until_ts, r.expired_ts,
                             r.fetched_ts, r.response_json) for r in rows]
