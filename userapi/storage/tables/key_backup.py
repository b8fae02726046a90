"""userapi_key_backup_versions and userapi_key_backup_keys: server-side
backups of room keys (modules/end_to_end_encryption.md, "Server-side key
backups"). Versions are numbered per user; a deleted version keeps its row
so its number is never reused."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Boolean, Column, Table, Text, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.storage.tables import METADATA

key_backup_versions = Table(
    "userapi_key_backup_versions",
    METADATA,
    Column("user_id", Text, primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("algorithm", Text, nullable=False),
    Column("auth_data_json", Text, nullable=False),
    Column("etag", BigInteger, nullable=False, default=0),
    Column("deleted", Boolean, nullable=False, default=False),
)

key_backup_keys = Table(
    "userapi_key_backup_keys",
    METADATA,
    Column("user_id", Text, primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("room_id", Text, primary_key=True),
    Column("session_id", Text, primary_key=True),
    Column("first_message_index", BigInteger, nullable=False),
    Column("forwarded_count", BigInteger, nullable=False),
    Column("is_verified", Boolean, nullable=False),
    Column("session_data_json", Text, nullable=False),
)


@dataclass(frozen=True)
class BackupVersionRow:
    version: int
    algorithm: str
    auth_data_json: str
    etag: int


@dataclass(frozen=True)
class BackupKeyRow:
    room_id: str
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data_json: str


class KeyBackupVersionsTable:
    async def select(self, conn: AsyncConnection, user_id: str, version: int | None) -> BackupVersionRow | None:
        """The live version ``version``, or the newest live one when None."""
        t = key_backup_versions.c
        query = select(t.version, t.algorithm, t.auth_data_json, t.etag).where(
            t.user_id == user_id, t.deleted.is_(False))
        if version is not None:
            query = query.where(t.version == version)
        found = (await conn.execute(query.order_by(t.version.desc()).limit(1))).first()
        if found is None:
            return None
        return BackupVersionRow(int(found.version), found.algorithm, found.auth_data_json, int(found.etag))

    async def insert_next(self, conn: AsyncConnection, user_id: str, algorithm: str, auth_data_json: str) -> int:
        t = key_backup_versions.c
        newest = (await conn.execute(select(func.max(t.version)).where(t.user_id == user_id))).scalar()
        version = int(newest or 0) + 1
        await conn.execute(key_backup_versions.insert().values(
            user_id=user_id, version=version, algorithm=algorithm, auth_data_json=auth_data_json, etag=0,
            deleted=False))
        return version

    async def update_auth_data(self, conn: AsyncConnection, user_id: str, version: int, auth_data_json: str) -> None:
        t = key_backup_versions.c
        await conn.execute(update(key_backup_versions).where(t.user_id == user_id, t.version == version)
                           .values(auth_data_json=auth_data_json))

    async def bump_etag(self, conn: AsyncConnection, user_id: str, version: int) -> None:
        t = key_backup_versions.c
        await conn.execute(update(key_backup_versions).where(t.user_id == user_id, t.version == version)
                           .values(etag=t.etag + 1))

    async def mark_deleted(self, conn: AsyncConnection, user_id: str, version: int) -> bool:
        t = key_backup_versions.c
        result = await conn.execute(update(key_backup_versions).where(
            t.user_id == user_id, t.version == version, t.deleted.is_(False)).values(deleted=True))
        return bool(result.rowcount)


class KeyBackupKeysTable:
    async def select(self, conn: AsyncConnection, user_id: str, version: int, room_id: str | None = None,
                     session_id: str | None = None) -> list[BackupKeyRow]:
        t = key_backup_keys.c
        query = select(t.room_id, t.session_id, t.first_message_index, t.forwarded_count, t.is_verified,
                       t.session_data_json).where(t.user_id == user_id, t.version == version)
        if room_id is not None:
            query = query.where(t.room_id == room_id)
        if session_id is not None:
            query = query.where(t.session_id == session_id)
        result = await conn.execute(query.order_by(t.room_id, t.session_id))
        return [BackupKeyRow(r.room_id, r.session_id, int(r.first_message_index), int(r.forwarded_count),
                             bool(r.is_verified), r.session_data_json) for r in result]

    async def count(self, conn: AsyncConnection, user_id: str, version: int) -> int:
        t = key_backup_keys.c
        return int((await conn.execute(select(func.count()).where(
            t.user_id == user_id, t.version == version))).scalar() or 0)

    async def delete(self, conn: AsyncConnection, user_id: str, version: int, room_id: str | None = None,
                     session_id: str | None = None) -> int:
        t = key_backup_keys.c
        statement = delete(key_backup_keys).where(t.user_id == user_id, t.version == version)
        if room_id is not None:
            statement = statement.where(t.room_id == room_id)
        if session_id is not None:
            statement = statement.where(t.session_id == session_id)
        result = await conn.execute(statement)
        return int(result.rowcount or 0)
