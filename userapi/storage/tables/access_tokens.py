"""userapi_access_tokens: the SHA-256 of every live access token and the
device it belongs to. The tokens themselves are never stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Table, Text, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.storage.tables import METADATA
from userapi.storage.tables.devices import devices

access_tokens = Table(
    "userapi_access_tokens",
    METADATA,
    Column("token_sha256", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class TokenOwner:
    user_id: str
    device_id: str
    display_name: str
    last_seen_ts: int
    last_seen_ip: str


class AccessTokensTable:
    async def insert(self, conn: AsyncConnection, token_sha256: str, user_id: str, device_id: str,
                     created_ts: int) -> None:
        await conn.execute(access_tokens.insert().values(
            token_sha256=token_sha256, user_id=user_id, device_id=device_id, created_ts=created_ts))

    async def select_owner(self, conn: AsyncConnection, token_sha256: str) -> TokenOwner | None:
        """The device the token belongs to, joined with the device row."""
        result = await conn.execute(
            select(access_tokens.c.user_id, access_tokens.c.device_id, devices.c.display_name,
                   devices.c.last_seen_ts, devices.c.last_seen_ip)
            .select_from(access_tokens.join(devices, (devices.c.user_id == access_tokens.c.user_id)
                                            & (devices.c.device_id == access_tokens.c.device_id)))
            .where(access_tokens.c.token_sha256 == token_sha256))
        found = result.first()
        if found is None:
            return None
        return TokenOwner(user_id=found.user_id, device_id=found.device_id,
                          display_name=found.display_name or "",
                          last_seen_ts=int(found.last_seen_ts), last_seen_ip=found.last_seen_ip or "")

    async def delete_for_devices(self, conn: AsyncConnection, user_id: str,
                                 device_ids: Sequence[str]) -> None:
        if not device_ids:
            return
        await conn.execute(delete(access_tokens).where(
            access_tokens.c.user_id == user_id, access_tokens.c.device_id.in_(list(device_ids))))
