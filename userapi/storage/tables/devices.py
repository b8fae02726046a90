"""userapi_devices: a user's devices (sessions), keyed by (user_id, device_id)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, Row, Table, Text, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.storage.tables import METADATA

devices = Table(
    "userapi_devices",
    METADATA,
    Column("user_id", Text, primary_key=True),
    Column("device_id", Text, primary_key=True),
    Column("display_name", Text, nullable=False, default=""),
    Column("created_ts", BigInteger, nullable=False),
    Column("last_seen_ts", BigInteger, nullable=False),
    Column("last_seen_ip", Text, nullable=False, default=""),
)


@dataclass(frozen=True)
class DeviceRow:
    user_id: str
    device_id: str
    display_name: str
    created_ts: int
    last_seen_ts: int
    last_seen_ip: str


_COLUMNS = (devices.c.user_id, devices.c.device_id, devices.c.display_name,
            devices.c.created_ts, devices.c.last_seen_ts, devices.c.last_seen_ip)


def _row(found: Row[Any, Any, Any, Any, Any, Any]) -> DeviceRow:
    return DeviceRow(
        user_id=found.user_id, device_id=found.device_id, display_name=found.display_name or "",
        created_ts=int(found.created_ts), last_seen_ts=int(found.last_seen_ts),
        last_seen_ip=found.last_seen_ip or "",
    )


class DevicesTable:
    async def upsert(self, conn: AsyncConnection, row: DeviceRow) -> None:
        """Creates the device, or refreshes an existing one with the same ID
        (logging in again with a known device ID keeps the device). Run in a
        write transaction, so the read and the write see the same row."""
        existing = await self.select(conn, row.user_id, row.device_id)
        if existing is None:
            await conn.execute(devices.insert().values(
                user_id=row.user_id, device_id=row.device_id, display_name=row.display_name,
                created_ts=row.created_ts, last_seen_ts=row.last_seen_ts,
                last_seen_ip=row.last_seen_ip))
            return
        values: dict[str, object] = {"last_seen_ts": row.last_seen_ts, "last_seen_ip": row.last_seen_ip}
        if row.display_name:
            values["display_name"] = row.display_name
        await conn.execute(update(devices).where(
            devices.c.user_id == row.user_id, devices.c.device_id == row.device_id).values(**values))

    async def select(self, conn: AsyncConnection, user_id: str, device_id: str) -> DeviceRow | None:
        result = await conn.execute(select(*_COLUMNS).where(
            devices.c.user_id == user_id, devices.c.device_id == device_id))
        found = result.first()
        return None if found is None else _row(found)

    async def select_for_user(self, conn: AsyncConnection, user_id: str) -> list[DeviceRow]:
        result = await conn.execute(select(*_COLUMNS).where(devices.c.user_id == user_id)
                                    .order_by(devices.c.device_id))
        return [_row(found) for found in result]

    async def delete(self, conn: AsyncConnection, user_id: str, device_ids: Sequence[str]) -> int:
        if not device_ids:
            return 0
        result = await conn.execute(delete(devices).where(
            devices.c.user_id == user_id, devices.c.device_id.in_(list(device_ids))))
        return int(result.rowcount or 0)

    async def update_last_seen(self, conn: AsyncConnection, user_id: str, device_id: str,
                               last_seen_ts: int) -> None:
        await conn.execute(update(devices).where(
            devices.c.user_id == user_id, devices.c.device_id == device_id)
            .values(last_seen_ts=last_seen_ts))

    async def update_display_name(self, conn: AsyncConnection, user_id: str, device_id: str,
                                  display_name: str) -> bool:
        result = await conn.execute(update(devices).where(
            devices.c.user_id == user_id, devices.c.device_id == device_id)
            .values(display_name=display_name))
        return bool(getattr(result, "rowcount", 0))
