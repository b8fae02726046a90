"""userapi_refresh_tokens: the SHA-256 of every live refresh token, its
device, and the refresh token it replaced (content/client-server-api,
"Refreshing access tokens": the replaced one stays usable until the new
access token or refresh token is used)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Index, Table, Text, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.storage.tables import METADATA

refresh_tokens = Table(
    "userapi_refresh_tokens",
    METADATA,
    Column("token_sha256", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("prev_sha256", Text),
    Index("userapi_refresh_tokens_device", "user_id", "device_id"),
    Index("userapi_refresh_tokens_prev", "prev_sha256"),
)


@dataclass(frozen=True)
class RefreshTokenRow:
    token_sha256: str
    user_id: str
    device_id: str
    created_ts: int
    prev_sha256: str | None


class RefreshTokensTable:
    async def insert(self, conn: AsyncConnection, row: RefreshTokenRow) -> None:
        await conn.execute(refresh_tokens.insert().values(
            token_sha256=row.token_sha256, user_id=row.user_id, device_id=row.device_id,
            created_ts=row.created_ts, prev_sha256=row.prev_sha256))

    async def select(self, conn: AsyncConnection, token_sha256: str) -> RefreshTokenRow | None:
        found = (await conn.execute(select(refresh_tokens).where(
            refresh_tokens.c.token_sha256 == token_sha256))).first()
        if found is None:
            return None
        return RefreshTokenRow(found.token_sha256, found.user_id, found.device_id, int(found.created_ts),
                               found.prev_sha256)

    async def delete(self, conn: AsyncConnection, token_sha256: str) -> None:
        await conn.execute(delete(refresh_tokens).where(refresh_tokens.c.token_sha256 == token_sha256))

    async def delete_successors(self, conn: AsyncConnection, token_sha256: str) -> None:
        await conn.execute(delete(refresh_tokens).where(refresh_tokens.c.prev_sha256 == token_sha256))

    async def delete_for_devices(self, conn: AsyncConnection, user_id: str, device_ids: Sequence[str]) -> None:
        if device_ids:
            await conn.execute(delete(refresh_tokens).where(
                refresh_tokens.c.user_id == user_id, refresh_tokens.c.device_id.in_(list(device_ids))))
