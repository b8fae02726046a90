"""syncapi_send_to_device: each device's inbox of to-device messages
(modules/send_to_device.md), emptied as the device syncs past them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Index, Table, Text, UniqueConstraint, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from syncapi.storage.tables import metadata

send_to_device = Table(
    "syncapi_send_to_device", metadata,
    Column("stream_pos", BigInteger, primary_key=True, autoincrement=False),
    Column("target_user_id", Text, nullable=False),
    Column("target_device_id", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("sender", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("content_json", Text, nullable=False),
    UniqueConstraint("target_user_id", "target_device_id", "message_id"),
    Index("syncapi_send_to_device_target", "target_user_id", "target_device_id", "stream_pos"),
)


@dataclass(frozen=True, slots=True)
class StoredToDevice:
    stream_pos: int
    sender: str
    event_type: str
    content_json: str


async def message_exists(conn: AsyncConnection, user_id: str, device_id: str, message_id: str) -> bool:
    t = send_to_device.c
    row = (await conn.execute(select(t.stream_pos).where(
        t.target_user_id == user_id, t.target_device_id == device_id, t.message_id == message_id))).first()
    return row is not None


async def insert_message(conn: AsyncConnection, *, stream_pos: int, user_id: str, device_id: str,
                         message_id: str, sender: str, event_type: str, content_json: str) -> None:
    await conn.execute(send_to_device.insert().values(
        stream_pos=stream_pos, target_user_id=user_id, target_device_id=device_id, message_id=message_id,
        sender=sender, event_type=event_type, content_json=content_json))


async def select_messages(conn: AsyncConnection, user_id: str, device_id: str, *, upto: int,
                          limit: int) -> list[StoredToDevice]:
    t = send_to_device.c
    stmt = (select(t.stream_pos, t.sender, t.event_type, t.content_json)
            .where(t.target_user_id == user_id, t.target_device_id == device_id, t.stream_pos <= upto)
            .order_by(t.stream_pos).limit(limit))
    return [StoredToDevice(int(row[0]), row[1], row[2], row[3]) for row in await conn.execute(stmt)]


async def delete_messages(conn: AsyncConnection, user_id: str, device_id: str, *, upto: int) -> int:
    """Drops what the device has acknowledged (synced past); answers how many."""
    t = send_to_device.c
    result = await conn.execute(delete(send_to_device).where(
        t.target_user_id == user_id, t.target_device_id == device_id, t.stream_pos <= upto))
    return int(result.rowcount or 0)
