"""userapi_device_list_streams: the latest device list stream ID of each
user (issued here for local users; the last applied for remote ones)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.storage.tables import METADATA

device_list_streams = Table(
    "userapi_device_list_streams",
    METADATA,
    Column("user_id", Text, primary_key=True),
    Column("stream_id", BigInteger, nullable=False),
)


class DeviceListStreamsTable:
    async def select(self, conn: AsyncConnection, user_id: str) -> int:
        """0 when the user has none yet."""
        found = (await conn.execute(select(device_list_streams.c.stream_id).where(
            device_list_streams.c.user_id == user_id))).first()
        return 0 if found is None else int(found.stream_id)
