"""The user API's storage facade: the only thing ``userapi.internal`` imports
from storage. Every method is one transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from common.storage import Database
from userapi.storage.tables.access_tokens import AccessTokensTable, TokenOwner
from userapi.storage.tables.accounts import AccountRow, AccountsTable
from userapi.storage.tables.devices import DeviceRow, DevicesTable
from userapi.storage.tables.profiles import ProfileRow, ProfilesTable, profiles

__all__ = ["AccountRow", "DeviceRow", "ProfileRow", "TokenOwner", "UserAPIDatabase"]


class UserAPIDatabase:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._accounts = AccountsTable()
        self._devices = DevicesTable()
        self._tokens = AccessTokensTable()
        self._profiles = ProfilesTable()

    # -- accounts -------------------------------------------------------------

    async def create_account(self, row: AccountRow, display_name: str = "") -> bool:
        """Creates the account and its profile; False when the localpart is
        already taken."""
        async with self.db.transaction() as conn:
            if not await self._accounts.insert(conn, row):
                return False
            await conn.execute(self.db.upsert(
                profiles, {"localpart": row.localpart, "display_name": display_name, "avatar_url": ""},
                ["localpart"]))
            return True

    async def get_account(self, localpart: str) -> AccountRow | None:
        async with self.db.connect() as conn:
            return await self._accounts.select(conn, localpart)

    async def account_exists(self, localpart: str) -> bool:
        async with self.db.connect() as conn:
            return await self._accounts.exists(conn, localpart)

    async def set_password_hash(self, localpart: str, password_hash: str | None, *, user_id: str = "",
                                log_out_except: str | None = None) -> int:
        """Replaces the password hash; with ``log_out_except`` (a device ID,
        or "" for none) also deletes the user's other devices and their
        tokens in the same transaction. Answers how many were deleted."""
        async with self.db.transaction() as conn:
            await self._accounts.update_password_hash(conn, localpart, password_hash)
            if log_out_except is None:
                return 0
            return await self._delete_devices(conn, user_id, None, log_out_except)

    async def deactivate_account(self, localpart: str, user_id: str) -> None:
        """No password, no devices, an empty profile; the row stays so the
        user ID is never given out again."""
        async with self.db.transaction() as conn:
            await self._accounts.mark_deactivated(conn, localpart)
            await self._delete_devices(conn, user_id, None, "")
            await conn.execute(self.db.upsert(
                profiles, {"localpart": localpart, "display_name": "", "avatar_url": ""}, ["localpart"]))

    # -- profiles -------------------------------------------------------------

    async def get_profile(self, localpart: str) -> ProfileRow | None:
        """None when there is no such account."""
        async with self.db.connect() as conn:
            if not await self._accounts.exists(conn, localpart):
                return None
            found = await self._profiles.select(conn, localpart)
        return found or ProfileRow(localpart, "", "")

    async def update_profile(self, localpart: str, *, display_name: str | None,
                             avatar_url: str | None) -> ProfileRow | None:
        """Sets the given fields; None when there is no such account."""
        async with self.db.transaction() as conn:
            if not await self._accounts.exists(conn, localpart):
                return None
            current = await self._profiles.select(conn, localpart) or ProfileRow(localpart, "", "")
            updated = ProfileRow(
                localpart,
                current.display_name if display_name is None else display_name,
                current.avatar_url if avatar_url is None else avatar_url)
            await conn.execute(self.db.upsert(
                profiles, {"localpart": localpart, "display_name": updated.display_name,
                           "avatar_url": updated.avatar_url}, ["localpart"]))
            return updated

    # -- devices and tokens ---------------------------------------------------

    async def create_device(self, row: DeviceRow, token_sha256: str) -> DeviceRow:
        """Creates (or refreshes) the device and gives it ``token_sha256`` as
        its only access token: earlier tokens of the same device stop working."""
        async with self.db.transaction() as conn:
            await self._devices.upsert(conn, row)
            await self._tokens.delete_for_devices(conn, row.user_id, [row.device_id])
            await self._tokens.insert(conn, token_sha256, row.user_id, row.device_id, row.created_ts)
            stored = await self._devices.select(conn, row.user_id, row.device_id)
        assert stored is not None
        return stored

    async def device_exists(self, user_id: str, device_id: str) -> bool:
        async with self.db.connect() as conn:
            return await self._devices.select(conn, user_id, device_id) is not None

    async def get_token_owner(self, token_sha256: str) -> TokenOwner | None:
        async with self.db.connect() as conn:
            return await self._tokens.select_owner(conn, token_sha256)

    async def touch_device(self, user_id: str, device_id: str, last_seen_ts: int) -> None:
        async with self.db.transaction() as conn:
            await self._devices.update_last_seen(conn, user_id, device_id, last_seen_ts)

    async def get_devices(self, user_id: str) -> list[DeviceRow]:
        async with self.db.connect() as conn:
            return await self._devices.select_for_user(conn, user_id)

    async def delete_devices(self, user_id: str, device_ids: Sequence[str] | None,
                             except_device_id: str = "") -> int:
        """Deletes the devices (every device of the user when ``device_ids`` is
        None) and their access tokens, keeping ``except_device_id``."""
        async with self.db.transaction() as conn:
            return await self._delete_devices(conn, user_id, device_ids, except_device_id)

    async def _delete_devices(self, conn: AsyncConnection, user_id: str, device_ids: Sequence[str] | None,
                              except_device_id: str) -> int:
        if device_ids is None:
            device_ids = [row.device_id for row in await self._devices.select_for_user(conn, user_id)]
        chosen = [d for d in dict.fromkeys(device_ids) if d != except_device_id]
        await self._tokens.delete_for_devices(conn, user_id, chosen)
        return await self._devices.delete(conn, user_id, chosen)
