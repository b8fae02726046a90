"""The user API's storage facade for end-to-end encryption: device keys,
one-time and fallback keys, cross-signing keys and signatures, the
per-user device list stream and key backups. Every method is one
transaction; JSON travels as text, exactly as uploaded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from common.storage import Database
from userapi.storage.tables.cross_signing_keys import (
    CrossSigningKeysTable,
    CrossSigningSigsTable,
    Signatures,
    cross_signing_keys,
    cross_signing_sigs,
)
from userapi.storage.tables.device_keys import DeviceKeysRow, DeviceKeysTable, device_keys
from userapi.storage.tables.device_list_streams import DeviceListStreamsTable, device_list_streams
from userapi.storage.tables.devices import devices
from userapi.storage.tables.fallback_keys import FallbackKeysTable, fallback_keys
from userapi.storage.tables.key_backup import (
    BackupKeyRow,
    BackupVersionRow,
    KeyBackupKeysTable,
    KeyBackupVersionsTable,
    key_backup_keys,
)
from userapi.storage.tables.one_time_keys import OneTimeKeysTable, one_time_keys

__all__ = ["BackupKeyRow", "BackupVersionRow", "DeviceKeysRow", "KeysDatabase", "Signatures", "StreamStep"]


@dataclass(frozen=True)
class StreamStep:
    """A user's device list stream moved from ``prev_id`` (0: none) to ``stream_id``."""
    stream_id: int
    prev_id: int


# Devices whose key counts are kept (see KeysDatabase.key_counts).
KEY_COUNTS_CACHE_SIZE = 10_000


class KeysDatabase:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._device_keys = DeviceKeysTable()
        self._one_time_keys = OneTimeKeysTable()
        self._fallback_keys = FallbackKeysTable()
        self._cross_signing = CrossSigningKeysTable()
        self._sigs = CrossSigningSigsTable()
        self._streams = DeviceListStreamsTable()
        self._backup_versions = KeyBackupVersionsTable()
        self._backup_keys = KeyBackupKeysTable()
        # (user, device) -> (write generation read at, one-time key counts, unused fallback algorithms).
        self._key_counts: dict[tuple[str, str], tuple[int, dict[str, int], list[str]]] = {}

    async def _next_stream_id(self, conn: AsyncConnection, user_id: str) -> StreamStep:
        prev = await self._streams.select(conn, user_id)
        await conn.execute(self.db.upsert(device_list_streams, {"user_id": user_id, "stream_id": prev + 1},
                                          ["user_id"]))
        return StreamStep(prev + 1, prev)

    # -- device list stream -----------------------------------------------------

    async def bump_device_list(self, user_id: str) -> StreamStep:
        async with self.db.transaction() as conn:
            return await self._next_stream_id(conn, user_id)

    async def device_list_stream_id(self, user_id: str) -> int:
        async with self.db.connect() as conn:
            return await self._streams.select(conn, user_id)

    # -- device keys ------------------------------------------------------------

    async def store_device_keys(self, user_id: str, device_id: str, key_json: str) -> StreamStep | None:
        """Stores a device's keys; the stream step when they changed, None when
        the same keys were stored already."""
        async with self.db.transaction() as conn:
            existing = await self._device_keys.select(conn, user_id, device_id)
            if existing is not None and existing.key_json == key_json:
                return None
            await conn.execute(self.db.upsert(device_keys, {"user_id": user_id, "device_id": device_id,
                                                            "key_json": key_json, "display_name": ""},
                                              ["user_id", "device_id"], set_=["key_json"]))
            return await self._next_stream_id(conn, user_id)

    async def device_keys_for_users(self, user_ids: Sequence[str]) -> list[DeviceKeysRow]:
        """Every stored device key of the users; local devices carry their
        display name from userapi_devices."""
        async with self.db.connect() as conn:
            rows = await self._device_keys.select_for_users(conn, user_ids)
            if not rows:
                return []
            names = {(r.user_id, r.device_id): r.display_name for r in (await conn.execute(
                select(devices.c.user_id, devices.c.device_id, devices.c.display_name).where(
                    devices.c.user_id.in_(list({r.user_id for r in rows})))))}
        return [DeviceKeysRow(r.user_id, r.device_id, r.key_json,
                              names.get((r.user_id, r.device_id)) or r.display_name) for r in rows]

    async def delete_devices_keys(self, user_id: str, device_ids: Sequence[str]) -> None:
        """Forgets the devices' keys of every kind (the caller takes a stream
        step per device it announces as deleted)."""
        if not device_ids:
            return
        async with self.db.transaction() as conn:
            await self._device_keys.delete(conn, user_id, device_ids)
            await self._one_time_keys.delete_for_devices(conn, user_id, device_ids)
            await self._fallback_keys.delete_for_devices(conn, user_id, device_ids)
            await self._sigs.delete_for_target(conn, user_id, device_ids)

    # -- one-time and fallback keys -----------------------------------------------

    async def existing_one_time_keys(self, user_id: str, device_id: str, key_ids: Sequence[str]) -> dict[str, str]:
        async with self.db.connect() as conn:
            return await self._one_time_keys.select_existing(conn, user_id, device_id, key_ids)

    async def store_one_time_keys(self, user_id: str, device_id: str,
                                  keys: Mapping[str, str]) -> None:
        """``keys``: "<algorithm>:<key id>" -> key JSON; known ones are kept."""
        if not keys:
            return
        rows = [{"user_id": user_id, "device_id": device_id, "key_id": key_id,
                 "algorithm": key_id.partition(":")[0], "key_json": key_json} for key_id, key_json in keys.items()]
        async with self.db.transaction() as conn:
            await conn.execute(self.db.upsert(one_time_keys, rows, ["user_id", "device_id", "key_id"], set_=[]))

    async def store_fallback_keys(self, user_id: str, device_id: str, keys: Mapping[str, str]) -> None:
        """``keys``: "<algorithm>:<key id>" -> key JSON; replaces the
        algorithm's fallback key, which is unused again unless it is the same key."""
        if not keys:
            return
        async with self.db.transaction() as conn:
            for key_id, key_json in keys.items():
                algorithm = key_id.partition(":")[0]
                existing = await self._fallback_keys.select(conn, user_id, device_id, algorithm)
                if existing is not None and existing[0] == key_id and existing[1] == key_json:
                    continue
                await conn.execute(self.db.upsert(fallback_keys, {
                    "user_id": user_id, "device_id": device_id, "algorithm": algorithm, "key_id": key_id,
                    "key_json": key_json, "used": False}, ["user_id", "device_id", "algorithm"]))

    async def key_counts(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """(one-time key count per algorithm, algorithms with an unused fallback key).
        Asked by every /sync with news; kept until this database's next write
        (``Database.write_generation``, as the token owners are), so a sync
        between two writes reads nothing."""
        generation = self.db.write_generation
        cached = self._key_counts.get((user_id, device_id))
        if cached is not None and cached[0] == generation:
            return dict(cached[1]), list(cached[2])
        async with self.db.connect() as conn:
            counts = await self._one_time_keys.counts(conn, user_id, device_id)
            unused = await self._fallback_keys.unused_algorithms(conn, user_id, device_id)
        if self.db.write_generation == generation:
            if len(self._key_counts) >= KEY_COUNTS_CACHE_SIZE:
                self._key_counts.clear()
            self._key_counts[(user_id, device_id)] = (generation, dict(counts), list(unused))
        return counts, unused

    async def claim_key(self, user_id: str, device_id: str, algorithm: str) -> tuple[str, str] | None:
        """(key ID, key JSON): a one-time key, deleted as it is handed out, or
        else the fallback key, then marked used; None when there is neither."""
        async with self.db.transaction() as conn:
            taken = await self._one_time_keys.take_one(conn, user_id, device_id, algorithm)
            if taken is not None:
                return taken
            fallback = await self._fallback_keys.select(conn, user_id, device_id, algorithm)
            if fallback is None:
                return None
            await self._fallback_keys.mark_used(conn, user_id, device_id, algorithm)
            return fallback[0], fallback[1]

    # -- cross-signing keys and signatures -----------------------------------------

    async def cross_signing_keys_for_users(self, user_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        async with self.db.connect() as conn:
            return await self._cross_signing.select_for_users(conn, user_ids)

    async def store_cross_signing_keys(self, user_id: str, keys: Mapping[str, str],
                                       replaced_public_keys: Sequence[str] = ()) -> None:
        """Stores the given key types; signatures on replaced keys go. The
        device list stream does not move: its steps are the m.device_list_update
        EDUs' stream IDs, and signing keys travel in m.signing_key_update."""
        async with self.db.transaction() as conn:
            for key_type, key_json in keys.items():
                await conn.execute(self.db.upsert(cross_signing_keys, {
                    "user_id": user_id, "key_type": key_type, "key_json": key_json}, ["user_id", "key_type"]))
            if replaced_public_keys:
                await self._sigs.delete_for_target(conn, user_id, replaced_public_keys)

    async def signatures_for(self, targets: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Signatures]:
        async with self.db.connect() as conn:
            return await self._sigs.select_for_targets(conn, targets)

    async def store_signatures(self, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
        """(origin user, origin key ID, target user, target key ID, signature) rows."""
        if not rows:
            return
        async with self.db.transaction() as conn:
            await conn.execute(self.db.upsert(cross_signing_sigs, [
                {"origin_user_id": o, "origin_key_id": ok, "target_user_id": t, "target_key_id": tk, "signature": s}
                for o, ok, t, tk, s in rows],
                ["origin_user_id", "origin_key_id", "target_user_id", "target_key_id"]))

    # -- remote users' device lists --------------------------------------------------

    async def apply_remote_device_update(self, user_id: str, device_id: str, *, stream_id: int,
                                         deleted: bool, key_json: str, display_name: str) -> None:
        async with self.db.transaction() as conn:
            if deleted:
                await self._device_keys.delete(conn, user_id, [device_id])
            else:
                await conn.execute(self.db.upsert(device_keys, {
                    "user_id": user_id, "device_id": device_id, "key_json": key_json,
                    "display_name": display_name}, ["user_id", "device_id"]))
            await conn.execute(self.db.upsert(device_list_streams, {"user_id": user_id, "stream_id": stream_id},
                                              ["user_id"]))

    async def replace_remote_devices(self, user_id: str, stream_id: int,
                                     device_rows: Sequence[DeviceKeysRow]) -> None:
        """A remote user's whole device list, from a resync."""
        async with self.db.transaction() as conn:
            await self._device_keys.delete(conn, user_id, None)
            for row in device_rows:
                await conn.execute(self.db.upsert(device_keys, {
                    "user_id": user_id, "device_id": row.device_id, "key_json": row.key_json,
                    "display_name": row.display_name}, ["user_id", "device_id"]))
            await conn.execute(self.db.upsert(device_list_streams, {"user_id": user_id, "stream_id": stream_id},
                                              ["user_id"]))

    # -- key backup ---------------------------------------------------------------------

    async def backup_version(self, user_id: str, version: int | None) -> tuple[BackupVersionRow, int] | None:
        """(the live version, or the newest one when None; its key count)."""
        async with self.db.connect() as conn:
            found = await self._backup_versions.select(conn, user_id, version)
            if found is None:
                return None
            return found, await self._backup_keys.count(conn, user_id, found.version)

    async def create_backup_version(self, user_id: str, algorithm: str, auth_data_json: str) -> int:
        async with self.db.transaction() as conn:
            return await self._backup_versions.insert_next(conn, user_id, algorithm, auth_data_json)

    async def update_backup_version(self, user_id: str, version: int, auth_data_json: str) -> None:
        async with self.db.transaction() as conn:
            await self._backup_versions.update_auth_data(conn, user_id, version, auth_data_json)

    async def delete_backup_version(self, user_id: str, version: int) -> bool:
        async with self.db.transaction() as conn:
            if not await self._backup_versions.mark_deleted(conn, user_id, version):
                return False
            await self._backup_keys.delete(conn, user_id, version)
            return True

    async def backup_keys(self, user_id: str, version: int, room_id: str | None = None,
                          session_id: str | None = None) -> list[BackupKeyRow]:
        async with self.db.connect() as conn:
            return await self._backup_keys.select(conn, user_id, version, room_id, session_id)

    async def store_backup_keys(self, user_id: str, version: int, rows: Sequence[BackupKeyRow]) -> tuple[int, int]:
        """Stores the rows (the caller chose which win); answers (etag, count)."""
        async with self.db.transaction() as conn:
            if rows:
                await conn.execute(self.db.upsert(key_backup_keys, [{
                    "user_id": user_id, "version": version, "room_id": r.room_id, "session_id": r.session_id,
                    "first_message_index": r.first_message_index, "forwarded_count": r.forwarded_count,
                    "is_verified": r.is_verified, "session_data_json": r.session_data_json} for r in rows],
                    ["user_id", "version", "room_id", "session_id"]))
                await self._backup_versions.bump_etag(conn, user_id, version)
            return await self._etag_and_count(conn, user_id, version)

    async def delete_backup_keys(self, user_id: str, version: int, room_id: str | None,
                                 session_id: str | None) -> tuple[int, int]:
        async with self.db.transaction() as conn:
            if await self._backup_keys.delete(conn, user_id, version, room_id, session_id):
                await self._backup_versions.bump_etag(conn, user_id, version)
            return await self._etag_and_count(conn, user_id, version)

    async def _etag_and_count(self, conn: AsyncConnection, user_id: str, version: int) -> tuple[int, int]:
        found = await self._backup_versions.select(conn, user_id, version)
        return (found.etag if found else 0), await self._backup_keys.count(conn, user_id, version)
