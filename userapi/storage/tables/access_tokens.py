"""userapi_access_tokens: the SHA-256 of every live access token and the
device it belongs to. The tokens themselves are never stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Table, Text, delete, select, update
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
    # None: the token never expires.
    Column("expires_ts", BigInteger),
    # The refresh token issued together with this token, if any.
    Column("refresh_sha256", Text),
    # The refresh token whose use issued this token, until this token is first used.
    Column("refreshed_from", Text),
)


@dataclass(frozen=True)
class TokenOwner:
    user_id: str
    device_id: str
    display_name: str
    last_seen_ts: int
    last_seen_ip: str
    expires_ts: int | None = None
    refreshed_from: str | None = None
    # The account's, filled in by the database facade.
    is_guest: bool = False


class AccessTokensTable:
    async def insert(self, conn: AsyncConnection, token_sha256: str, user_id: str, device_id: str,
                     created_ts: int, *, expires_ts: int | None = None, refresh_sha256: str | None = None,
                     refreshed_from: str | None = None) -> None:
        await conn.execute(access_tokens.insert().values(
            token_sha256=token_sha256, user_id=user_id, device_id=device_id, created_ts=created_ts,
            expires_ts=expires_ts, refresh_sha256=refresh_sha256, refreshed_from=refreshed_from))

    async def delete_issued_with(self, conn: AsyncConnection, refresh_sha256: str) -> None:
        """Deletes the access token issued together with that refresh token."""
        await conn.execute(delete(access_tokens).where(access_tokens.c.refresh_sha256 == refresh_sha256))

    async def delete_refreshed_from(self, conn: AsyncConnection, refresh_sha256: str) -> None:
        """Deletes the access tokens an earlier use of that refresh token issued."""
        await conn.execute(delete(access_tokens).where(access_tokens.c.refreshed_from == refresh_sha256))

    async def clear_refreshed_from(self, conn: AsyncConnection, token_sha256: str) -> None:
        await conn.execute(update(access_tokens).where(access_tokens.c.token_sha256 == token_sha256)
                           .values(refreshed_from=None))

    async def select_owner(self, conn: AsyncConnection, token_sha256: str) -> TokenOwner | None:
        """The device the token belongs to, joined with the device row."""
        result = await conn.execute(
            select(access_tokens.c.user_id, access_tokens.c.device_id, devices.c.display_name,
                   devices.c.last_seen_ts, devices.c.last_seen_ip, access_tokens.c.expires_ts,
                   access_tokens.c.refreshed_from)
            .select_from(access_tokens.join(devices, (devices.c.user_id == access_tokens.c.user_id)
                                            & (devices.c.device_id == access_tokens.c.device_id)))
            .where(access_tokens.c.token_sha256 == token_sha256))
        found = result.first()
        if found is None:
            return None
        return TokenOwner(user_id=found.user_id, device_id=found.device_id,
                          display_name=found.display_name or "",
                          last_seen_ts=int(found.last_seen_ts), last_seen_ip=found.last_seen_ip or "",
                          expires_ts=None if found.expires_ts is None else int(found.expires_ts),
                          refreshed_from=found.refreshed_from)

    async def delete_for_devices(self, conn: AsyncConnection, user_id: str,
                                 device_ids: Sequence[str]) -> None:
        if not device_ids:
            return
        await conn.execute(delete(access_tokens).where(
            access_tokens.c.user_id == user_id, access_tokens.c.device_id.in_(list(device_ids))))
