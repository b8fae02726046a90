"""userapi_device_keys: each device's identity keys (local devices, and
remote users' devices learnt over federation), keyed by (user_id, device_id)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Column, Table, Text, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.storage.tables import METADATA

device_keys = Table(
    "userapi_device_keys",
    METADATA,
    Column("user_id", Text, primary_key=True),
    Column("device_id", Text, primary_key=True),
    Column("key_json", Text, nullable=False),
    Column("display_name", Text, nullable=False, default=""),
)


@dataclass(frozen=True)
class DeviceKeysRow:
    user_id: str
    device_id: str
    key_json: str
    display_name: str


class DeviceKeysTable:
    async def select_for_users(self, conn: AsyncConnection, user_ids: Sequence[str]) -> list[DeviceKeysRow]:
        if not user_ids:
            return []
        t = device_keys.c
        result = await conn.execute(select(t.user_id, t.device_id, t.key_json, t.display_name)
                                    .where(t.user_id.in_(list(user_ids))).order_by(t.user_id, t.device_id))
        return [DeviceKeysRow(r.user_id, r.device_id, r.key_json, r.display_name or "") for r in result]

    async def select(self, conn: AsyncConnection, user_id: str, device_id: str) -> DeviceKeysRow | None:
        t = device_keys.c
        found = (await conn.execute(select(t.user_id, t.device_id, t.key_json, t.display_name).where(
            t.user_id == user_id, t.device_id == device_id))).first()
        return None if found is None else DeviceKeysRow(found.user_id, found.device_id, found.key_json,
                                                        found.display_name or "")

    async def delete(self, conn: AsyncConnection, user_id: str, device_ids: Sequence[str] | None) -> None:
        """Deletes the devices' keys (every device of the user when None)."""
        statement = delete(device_keys).where(device_keys.c.user_id == user_id)
        if device_ids is not None:
            statement = statement.where(device_keys.c.device_id.in_(list(device_ids)))
        await conn.execute(statement)
