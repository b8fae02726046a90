"""userapi_one_time_keys: each device's unclaimed one-time keys; a claim
deletes the key it hands out."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Column, Table, Text, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.storage.tables import METADATA

one_time_keys = Table(
    "userapi_one_time_keys",
    METADATA,
    Column("user_id", Text, primary_key=True),
    Column("device_id", Text, primary_key=True),
    Column("key_id", Text, primary_key=True),
    Column("algorithm", Text, nullable=False),
    Column("key_json", Text, nullable=False),
)


class OneTimeKeysTable:
    async def select_existing(self, conn: AsyncConnection, user_id: str, device_id: str,
                              key_ids: Sequence[str]) -> dict[str, str]:
        """key ID -> key JSON of those of ``key_ids`` the device has already."""
        if not key_ids:
            return {}
        t = one_time_keys.c
        result = await conn.execute(select(t.key_id, t.key_json).where(
            t.user_id == user_id, t.device_id == device_id, t.key_id.in_(list(key_ids))))
        return {r.key_id: r.key_json for r in result}

    async def counts(self, conn: AsyncConnection, user_id: str, device_id: str) -> dict[str, int]:
        t = one_time_keys.c
        result = await conn.execute(select(t.algorithm, func.count()).where(
            t.user_id == user_id, t.device_id == device_id).group_by(t.algorithm))
        return {str(row[0]): int(row[1]) for row in result}

    async def take_one(self, conn: AsyncConnection, user_id: str, device_id: str,
                       algorithm: str) -> tuple[str, str] | None:
        """Deletes and answers (key ID, key JSON) of one of the device's keys of
        ``algorithm``; None when it has none. Run in a write transaction."""
        t = one_time_keys.c
        found = (await conn.execute(select(t.key_id, t.key_json).where(
            t.user_id == user_id, t.device_id == device_id, t.algorithm == algorithm)
            .order_by(t.key_id).limit(1))).first()
        if found is None:
            return None
        await conn.execute(delete(one_time_keys).where(
            t.user_id == user_id, t.device_id == device_id, t.key_id == found.key_id))
        return str(found.key_id), str(found.key_json)

    async def delete_for_devices(self, conn: AsyncConnection, user_id: str,
                                 device_ids: Sequence[str] | None) -> None:
        statement = delete(one_time_keys).where(one_time_keys.c.user_id == user_id)
        if device_ids is not None:
            statement = statement.where(one_time_keys.c.device_id.in_(list(device_ids)))
        await conn.execute(statement)
