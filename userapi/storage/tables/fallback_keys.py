"""userapi_fallback_keys: each device's fallback key per algorithm, handed
out when its one-time keys run out; ``used`` once it has been."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Boolean, Column, Table, Text, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.storage.tables import METADATA

fallback_keys = Table(
    "userapi_fallback_keys",
    METADATA,
    Column("user_id", Text, primary_key=True),
    Column("device_id", Text, primary_key=True),
    Column("algorithm", Text, primary_key=True),
    Column("key_id", Text, nullable=False),
    Column("key_json", Text, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
)


class FallbackKeysTable:
    async def select(self, conn: AsyncConnection, user_id: str, device_id: str,
                     algorithm: str) -> tuple[str, str, bool] | None:
        """(key ID, key JSON, used) of the device's fallback key of ``algorithm``."""
        t = fallback_keys.c
        found = (await conn.execute(select(t.key_id, t.key_json, t.used).where(
            t.user_id == user_id, t.device_id == device_id, t.algorithm == algorithm))).first()
        return None if found is None else (str(found.key_id), str(found.key_json), bool(found.used))

    async def mark_used(self, conn: AsyncConnection, user_id: str, device_id: str, algorithm: str) -> None:
        t = fallback_keys.c
        await conn.execute(update(fallback_keys).where(
            t.user_id == user_id, t.device_id == device_id, t.algorithm == algorithm).values(used=True))

    async def unused_algorithms(self, conn: AsyncConnection, user_id: str, device_id: str) -> list[str]:
        t = fallback_keys.c
        result = await conn.execute(select(t.algorithm).where(
            t.user_id == user_id, t.device_id == device_id, t.used.is_(False)).order_by(t.algorithm))
        return [str(r.algorithm) for r in result]

    async def delete_for_devices(self, conn: AsyncConnection, user_id: str,
                                 device_ids: Sequence[str] | None) -> None:
        statement = delete(fallback_keys).where(fallback_keys.c.user_id == user_id)
        if device_ids is not None:
            statement = statement.where(fallback_keys.c.device_id.in_(list(device_ids)))
        await conn.execute(statement)
