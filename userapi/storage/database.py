"""The user API's storage facade: the only thing ``userapi.internal`` imports
from storage. Every method is one transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from common.storage import Database
from userapi.storage.tables.access_tokens import AccessTokensTable, TokenOwner
from userapi.storage.tables.account_data import AccountDataRow, AccountDataTable, account_data
from userapi.storage.tables.accounts import AccountRow, AccountsTable
from userapi.storage.tables.devices import DeviceRow, DevicesTable
from userapi.storage.tables.profiles import ProfileRow, ProfilesTable, profiles
from userapi.storage.tables.pushers import PusherRow, PushersTable, pushers
from userapi.storage.tables.refresh_tokens import RefreshTokenRow, RefreshTokensTable

__all__ = ["AccountDataRow", "AccountRow", "DeviceRow", "ProfileRow", "PusherRow", "RefreshTokenRow", "TokenOwner",
           "UserAPIDatabase"]


#: Token owners kept between writes (see ``get_token_owner``).
TOKEN_OWNER_CACHE_SIZE = 10_000


class UserAPIDatabase:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._accounts = AccountsTable()
        self._devices = DevicesTable()
        self._tokens = AccessTokensTable()
        self._profiles = ProfilesTable()
        self._account_data = AccountDataTable()
        self._pushers = PushersTable()
        self._refresh_tokens = RefreshTokensTable()
        # Every request asks who owns its token: the answers are kept until
        # this database's next write (logout, refresh, device change, last
        # seen...), which is rare next to reads. Bounded; dropped when full.
        self._token_owners: dict[str, tuple[int, TokenOwner | None]] = {}

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

    async def upgrade_guest(self, localpart: str, password_hash: str | None) -> bool:
        async with self.db.transaction() as conn:
            return await self._accounts.upgrade_guest(conn, localpart, password_hash)

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
            # Every account has its profile row from its creation (and rows are
            # never deleted): one read for the profile a join puts in its event.
            found = await self._profiles.select(conn, localpart)
            if found is not None:
                return found
            if not await self._accounts.exists(conn, localpart):
                return None
        return ProfileRow(localpart, "", "")

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

    # -- account data and pushers -----------------------------------------------

    async def get_account_data(self, user_id: str, room_id: str, data_type: str) -> AccountDataRow | None:
        async with self.db.connect() as conn:
            return await self._account_data.select(conn, user_id, room_id, data_type)

    async def get_all_account_data(self, user_id: str, room_id: str | None) -> list[AccountDataRow]:
        """One scope's account data ("" is the global one), or all of it when None."""
        async with self.db.connect() as conn:
            return await self._account_data.select_all(conn, user_id, room_id)

    async def set_account_data(self, user_id: str, room_id: str, data_type: str, content_json: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(self.db.upsert(
                account_data, {"user_id": user_id, "room_id": room_id, "type": data_type,
                               "content_json": content_json}, ["user_id", "room_id", "type"]))

    async def get_pushers(self, user_id: str) -> list[PusherRow]:
        async with self.db.connect() as conn:
            return await self._pushers.select_for_user(conn, user_id)

    async def set_pusher(self, row: PusherRow, *, append: bool) -> None:
        """Creates or replaces the user's pusher; without ``append`` other
        users' pushers with the same app ID and push key go (the spec)."""
        async with self.db.transaction() as conn:
            if not append:
                await self._pushers.delete(conn, row.app_id, row.pushkey, except_user_id=row.user_id)
            values = {name: getattr(row, name) for name in PusherRow.__dataclass_fields__}
            await conn.execute(self.db.upsert(pushers, values, ["user_id", "app_id", "pushkey"],
                                              set_=[c for c in values if c not in (
                                                  "user_id", "app_id", "pushkey", "created_ts")]))

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> int:
        async with self.db.transaction() as conn:
            return await self._pushers.delete(conn, app_id, pushkey, user_id=user_id)

    # -- devices and tokens ---------------------------------------------------

    async def create_device(self, row: DeviceRow, token_sha256: str, *, expires_ts: int | None = None,
                            refresh_sha256: str | None = None) -> DeviceRow:
        """Creates (or refreshes) the device and gives it ``token_sha256`` as
        its only access token (and ``refresh_sha256`` as its only refresh
        token): earlier tokens of the same device stop working."""
        async with self.db.transaction() as conn:
            await self._devices.upsert(conn, row)
            await self._tokens.delete_for_devices(conn, row.user_id, [row.device_id])
            await self._refresh_tokens.delete_for_devices(conn, row.user_id, [row.device_id])
            await self._tokens.insert(conn, token_sha256, row.user_id, row.device_id, row.created_ts,
                                      expires_ts=expires_ts, refresh_sha256=refresh_sha256)
            if refresh_sha256 is not None:
                await self._refresh_tokens.insert(conn, RefreshTokenRow(
                    refresh_sha256, row.user_id, row.device_id, row.created_ts, None))
            stored = await self._devices.select(conn, row.user_id, row.device_id)
        assert stored is not None
        return stored

    async def device_exists(self, user_id: str, device_id: str) -> bool:
        async with self.db.connect() as conn:
            return await self._devices.select(conn, user_id, device_id) is not None

    async def get_token_owner(self, token_sha256: str) -> TokenOwner | None:
        generation = self.db.write_generation
        cached = self._token_owners.get(token_sha256)
        if cached is not None and cached[0] == generation:
            return cached[1]
        async with self.db.connect() as conn:
            owner = await self._tokens.select_owner(conn, token_sha256)
            if owner is not None:
                account = await self._accounts.select(conn, owner.user_id[1:].partition(":")[0])
                if account is not None and account.is_guest:
                    owner = dataclasses.replace(owner, is_guest=True)
        if self.db.write_generation == generation:
            if len(self._token_owners) >= TOKEN_OWNER_CACHE_SIZE:
                self._token_owners.clear()
            self._token_owners[token_sha256] = (generation, owner)
        return owner

    async def refresh_tokens(self, refresh_sha256: str, new_access_sha256: str, new_refresh_sha256: str,
                             *, now_ts: int, expires_ts: int | None) -> RefreshTokenRow | None:
        """Issues a new access and refresh token for the device of a live
        refresh token; None when it is not live. The used token stays live
        (a client that lost the answer may repeat) until a successor is used;
        a repeat replaces the successors of the earlier attempt. Using this
        token revokes the one it replaced."""
        async with self.db.transaction() as conn:
            found = await self._refresh_tokens.select(conn, refresh_sha256)
            if found is None:
                return None
            await self._retire_predecessor(conn, found.prev_sha256)
            await self._refresh_tokens.delete_successors(conn, refresh_sha256)
            await self._tokens.delete_refreshed_from(conn, refresh_sha256)
            await self._refresh_tokens.insert(conn, RefreshTokenRow(
                new_refresh_sha256, found.user_id, found.device_id, now_ts, refresh_sha256))
            await self._tokens.insert(conn, new_access_sha256, found.user_id, found.device_id, now_ts,
                                      expires_ts=expires_ts, refresh_sha256=new_refresh_sha256,
                                      refreshed_from=refresh_sha256)
            return found

    async def first_use_of_refreshed_token(self, token_sha256: str, refreshed_from: str) -> None:
        """The access token a refresh issued is used: the refresh token that
        was used (and the access token issued with it) are revoked."""
        async with self.db.transaction() as conn:
            await self._retire_predecessor(conn, refreshed_from)
            await self._tokens.clear_refreshed_from(conn, token_sha256)

    async def _retire_predecessor(self, conn: AsyncConnection, refresh_sha256: str | None) -> None:
        if refresh_sha256 is None:
            return
        await self._refresh_tokens.delete(conn, refresh_sha256)
        await self._tokens.delete_issued_with(conn, refresh_sha256)

    async def rename_device(self, user_id: str, device_id: str, display_name: str) -> DeviceRow | None:
        async with self.db.transaction() as conn:
            if not await self._devices.update_display_name(conn, user_id, device_id, display_name):
                return None
            return await self._devices.select(conn, user_id, device_id)

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
        await self._refresh_tokens.delete_for_devices(conn, user_id, chosen)
        return await self._devices.delete(conn, user_id, chosen)
