"""The user API's logic: the in-process binding of ``userapi.api.UserAPI``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import string
import time
from typing import Any

from myelin.userapi.v1 import account_data_log_pb2
from myelin.userapi.v1 import userapi_pb2 as pb

from common import errors
from userapi.internal import localparts, passwords
from userapi.internal.keys import KeysInternal
from userapi.internal.revocations import TokenRevocations
from userapi.producers import AccountDataProducer, DeviceListProducer
from userapi.storage.database import AccountDataRow, AccountRow, DeviceRow, PusherRow, UserAPIDatabase
from userapi.storage.keys_database import KeysDatabase

# A token is 32 random bytes, URL-safe base64, with a prefix that secret
# scanners can recognise.
TOKEN_PREFIX = "myt_"
REFRESH_TOKEN_PREFIX = "myr_"
# As Synapse's default: access tokens issued with a refresh token live five minutes.
DEFAULT_REFRESHABLE_LIFETIME_MS = 5 * 60 * 1000
TOKEN_BYTES = 32
DEVICE_ID_LENGTH = 10
# Writing "last seen" on every request would make every read a write.
LAST_SEEN_RESOLUTION_MS = 5 * 60 * 1000


def _now_ms() -> int:
    return int(time.time() * 1000)


def token_digest(token: str) -> str:
    """What the database keeps of an access token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_access_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def new_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def new_device_id() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(DEVICE_ID_LENGTH))


class UserAPIInternal(KeysInternal):
    """Implements ``userapi.api.UserAPI`` against the user API's database."""

    def __init__(self, database: UserAPIDatabase, server_name: str,
                 password_params: passwords.ScryptParams = passwords.DEFAULT_PARAMS,
                 account_data_producer: AccountDataProducer | None = None, *,
                 refreshable_token_lifetime_ms: int = DEFAULT_REFRESHABLE_LIFETIME_MS,
                 nonrefreshable_token_lifetime_ms: int = 0,
                 device_list_producer: DeviceListProducer | None = None) -> None:
        # End-to-end keys (userapi.internal.keys); device changes are published
        # on userapi.device_list_update through ``device_list_producer``.
        super().__init__(KeysDatabase(database.db), server_name, device_list_producer)
        self._db = database
        # How long access tokens live (ms; 0: for ever), with and without a refresh
        # token. Read at each issue, so a test may change them.
        self.refreshable_token_lifetime_ms = refreshable_token_lifetime_ms
        self.nonrefreshable_token_lifetime_ms = nonrefreshable_token_lifetime_ms
        # None: changes are stored but not published (tests without a log).
        self._account_data_producer = account_data_producer
        # user ID -> [lock, holders and waiters]: one user's changes are stored
        # and published one at a time, so the log has them in the order stored.
        self._account_data_locks: dict[str, list[Any]] = {}
        self._server_name = server_name
        self._password_params = password_params
        # Watched by the token caches of fronts in other processes (gRPC
        # WatchTokenRevocations): every change below that ends or alters what
        # query_access_token answers is published once committed.
        self.revocations = TokenRevocations()

    def _user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self._server_name}"

    def _localpart_of(self, user_id: str) -> str:
        """The localpart of a local user ID; NotFound for anything else."""
        if not user_id.startswith("@") or ":" not in user_id:
            raise errors.InvalidParam(f"not a user ID: {user_id!r}")
        localpart, _, server = user_id[1:].partition(":")
        if server != self._server_name:
            raise errors.NotFound(f"{user_id} is not a local user")
        return localpart

    def _account(self, row: AccountRow) -> pb.Account:
        return pb.Account(user_id=self._user_id(row.localpart), localpart=row.localpart,
                          created_ts=row.created_ts, is_guest=row.is_guest,
                          deactivated=row.deactivated)

    # -- accounts -------------------------------------------------------------

    async def query_account_availability(
            self, req: pb.QueryAccountAvailabilityRequest) -> pb.QueryAccountAvailabilityResponse:
        localparts.check_registrable(req.localpart, self._server_name)
        taken = await self._db.account_exists(req.localpart)
        return pb.QueryAccountAvailabilityResponse(available=not taken)

    async def perform_account_creation(self, req: pb.PerformAccountCreationRequest) -> pb.Account:
        localparts.check_registrable(req.localpart, self._server_name, is_guest=req.is_guest)
        password_hash = None
        if req.password:
            password_hash = await asyncio.to_thread(
                passwords.hash_password, req.password, self._password_params)
        row = AccountRow(localpart=req.localpart, password_hash=password_hash,
                         created_ts=_now_ms(), is_guest=req.is_guest, deactivated=False)
        # As Synapse: a new account's display name is its localpart.
        if not await self._db.create_account(row, display_name=req.localpart):
            raise errors.UserInUse("User ID already taken.")
        return self._account(row)

    async def query_account(self, req: pb.QueryAccountRequest) -> pb.Account:
        row = await self._db.get_account(req.localpart)
        if row is None:
            raise errors.NotFound(f"no account {self._user_id(req.localpart)}")
        return self._account(row)

    async def perform_guest_upgrade(self, req: pb.PerformGuestUpgradeRequest) -> pb.Account:
        password_hash = None
        if req.password:
            password_hash = await asyncio.to_thread(
                passwords.hash_password, req.password, self._password_params)
        if not await self._db.upgrade_guest(req.localpart, password_hash):
            raise errors.NotFound(f"no guest account {self._user_id(req.localpart)}")
        # Its tokens stay, but are no longer a guest's.
        await self.revocations.publish(self._user_id(req.localpart))
        row = await self._db.get_account(req.localpart)
        assert row is not None
        return self._account(row)

    async def perform_password_check(self, req: pb.PerformPasswordCheckRequest) -> pb.Account:
        row = await self._db.get_account(req.localpart)
        if row is None or row.password_hash is None or row.deactivated:
            await asyncio.to_thread(passwords.burn_time_like_a_check, req.password)
            raise errors.Forbidden("Invalid username or password")
        if not await asyncio.to_thread(passwords.verify_password, req.password, row.password_hash):
            raise errors.Forbidden("Invalid username or password")
        return self._account(row)

    # -- devices and tokens ---------------------------------------------------

    async def perform_device_creation(self, req: pb.PerformDeviceCreationRequest) -> pb.Device:
        localpart = self._localpart_of(req.user_id)
        account = await self._db.get_account(localpart)
        if account is None or account.deactivated:
            raise errors.NotFound(f"no account {req.user_id}")
        device_id = req.device_id or new_device_id()
        now = _now_ms()
        token = new_access_token()
        refresh = new_refresh_token() if req.refresh_token else None
        lifetime = self.refreshable_token_lifetime_ms if refresh else self.nonrefreshable_token_lifetime_ms
        stored = await self._db.create_device(
            DeviceRow(user_id=req.user_id, device_id=device_id, display_name=req.display_name,
                      created_ts=now, last_seen_ts=now, last_seen_ip=req.ip),
            token_digest(token), expires_ts=now + lifetime if lifetime else None,
            refresh_sha256=token_digest(refresh) if refresh else None)
        if req.device_id:
            # A device ID the client chose may be an existing device's: its
            # earlier tokens stopped working. (A new random ID has none: no
            # revocation, so a login waits for no front.)
            await self.revocations.publish(stored.user_id, [stored.device_id])
        if stored.created_ts == now:
            # A new device (a known device ID keeps its created_ts).
            await self.device_list_changed(stored.user_id, stored.device_id, stored.display_name)
        return pb.Device(user_id=stored.user_id, device_id=stored.device_id,
                         display_name=stored.display_name, access_token=token,
                         last_seen_ts=stored.last_seen_ts, last_seen_ip=stored.last_seen_ip,
                         refresh_token=refresh or "", expires_in_ms=lifetime, is_guest=account.is_guest)

    async def perform_token_refresh(self, req: pb.PerformTokenRefreshRequest) -> pb.Device:
        if not req.refresh_token:
            raise errors.UnknownToken("Unknown refresh token", extra={"soft_logout": False})
        now = _now_ms()
        token, refresh = new_access_token(), new_refresh_token()
        lifetime = self.refreshable_token_lifetime_ms
        found = await self._db.refresh_tokens(
            token_digest(req.refresh_token), token_digest(token), token_digest(refresh), now_ts=now,
            expires_ts=now + lifetime if lifetime else None)
        if found is None:
            raise errors.UnknownToken("Unknown or already used refresh token", extra={"soft_logout": False})
        # Tokens issued from this refresh token before (a reused one) are gone.
        await self.revocations.publish(found.user_id, [found.device_id])
        return pb.Device(user_id=found.user_id, device_id=found.device_id, access_token=token,
                         refresh_token=refresh, expires_in_ms=lifetime)

    async def perform_device_update(self, req: pb.PerformDeviceUpdateRequest) -> pb.Device:
        if not req.HasField("display_name"):
            devices = await self._db.get_devices(req.user_id)
            row = next((d for d in devices if d.device_id == req.device_id), None)
        else:
            row = await self._db.rename_device(req.user_id, req.device_id, req.display_name)
            if row is not None:
                # query_access_token answers the display name.
                await self.revocations.publish(row.user_id, [row.device_id])
                await self.device_list_changed(row.user_id, row.device_id, row.display_name)
        if row is None:
            raise errors.NotFound("Device not found")
        return pb.Device(user_id=row.user_id, device_id=row.device_id, display_name=row.display_name,
                         last_seen_ts=row.last_seen_ts, last_seen_ip=row.last_seen_ip)

    async def query_access_token(self, req: pb.QueryAccessTokenRequest) -> pb.Device:
        if not req.access_token:
            raise errors.UnknownToken("Unknown access token", extra={"soft_logout": False})
        owner = await self._db.get_token_owner(token_digest(req.access_token))
        if owner is None:
            raise errors.UnknownToken("Unknown access token", extra={"soft_logout": False})
        now = _now_ms()
        if owner.expires_ts is not None and now >= owner.expires_ts and not req.allow_expired:
            # Soft logout: the device and its keys stay; a refresh or a login
            # with the same device ID gets a new token.
            raise errors.UnknownToken("Access token has expired", extra={"soft_logout": True})
        if owner.refreshed_from is not None:
            await self._db.first_use_of_refreshed_token(token_digest(req.access_token), owner.refreshed_from)
            # The token it was refreshed from stopped working.
            await self.revocations.publish(owner.user_id, [owner.device_id])
        last_seen = owner.last_seen_ts
        if now - last_seen >= LAST_SEEN_RESOLUTION_MS:
            await self._db.touch_device(owner.user_id, owner.device_id, now)
            last_seen = now
        return pb.Device(user_id=owner.user_id, device_id=owner.device_id,
                         display_name=owner.display_name, last_seen_ts=last_seen,
                         last_seen_ip=owner.last_seen_ip, is_guest=owner.is_guest,
                         cacheable=owner.expires_ts is None and owner.refreshed_from is None)

    async def perform_device_deletion(
            self, req: pb.PerformDeviceDeletionRequest) -> pb.PerformDeviceDeletionResponse:
        before = {row.device_id for row in await self._db.get_devices(req.user_id)}
        deleted = await self._db.delete_devices(
            req.user_id, list(req.device_ids) if req.device_ids else None, req.except_device_id)
        await self.revocations.publish(req.user_id, req.device_ids)
        await self._forget_deleted_devices(req.user_id, before)
        return pb.PerformDeviceDeletionResponse(deleted=deleted)

    async def _forget_deleted_devices(self, user_id: str, before: set[str]) -> None:
        """The keys of the devices of ``before`` that are gone now go too."""
        after = {row.device_id for row in await self._db.get_devices(user_id)}
        await self.devices_deleted(user_id, before - after)

    async def query_devices(self, req: pb.QueryDevicesRequest) -> pb.QueryDevicesResponse:
        rows = await self._db.get_devices(req.user_id)
        return pb.QueryDevicesResponse(devices=[
            pb.Device(user_id=row.user_id, device_id=row.device_id, display_name=row.display_name,
                      last_seen_ts=row.last_seen_ts, last_seen_ip=row.last_seen_ip)
            for row in rows
        ])

    # -- profiles, password, deactivation ---------------------------------------

    async def query_profile(self, req: pb.QueryProfileRequest) -> pb.Profile:
        found = await self._db.get_profile(self._localpart_of(req.user_id))
        if found is None:
            raise errors.NotFound("Profile was not found")
        return pb.Profile(user_id=req.user_id, display_name=found.display_name, avatar_url=found.avatar_url)

    async def perform_profile_update(self, req: pb.PerformProfileUpdateRequest) -> pb.Profile:
        updated = await self._db.update_profile(
            self._localpart_of(req.user_id),
            display_name=req.display_name if req.HasField("display_name") else None,
            avatar_url=req.avatar_url if req.HasField("avatar_url") else None)
        if updated is None:
            raise errors.NotFound("Profile was not found")
        return pb.Profile(user_id=req.user_id, display_name=updated.display_name, avatar_url=updated.avatar_url)

    async def perform_password_update(
            self, req: pb.PerformPasswordUpdateRequest) -> pb.PerformPasswordUpdateResponse:
        if not req.new_password:
            raise errors.InvalidParam("The new password may not be empty")
        row = await self._db.get_account(req.localpart)
        if row is None or row.deactivated:
            raise errors.NotFound(f"no account {self._user_id(req.localpart)}")
        password_hash = await asyncio.to_thread(
            passwords.hash_password, req.new_password, self._password_params)
        before = {row.device_id for row in await self._db.get_devices(self._user_id(req.localpart))}
        deleted = await self._db.set_password_hash(
            req.localpart, password_hash, user_id=self._user_id(req.localpart),
            log_out_except=req.except_device_id if req.log_out_devices else None)
        if deleted:
            # Every device named, the kept one too: a device created since
            # ``before`` was read may be among those deleted.
            await self.revocations.publish(self._user_id(req.localpart))
            await self._forget_deleted_devices(self._user_id(req.localpart), before)
        return pb.PerformPasswordUpdateResponse(devices_deleted=deleted)

    async def perform_account_deactivation(self, req: pb.PerformAccountDeactivationRequest) -> pb.Account:
        row = await self._db.get_account(req.localpart)
        if row is None:
            raise errors.NotFound(f"no account {self._user_id(req.localpart)}")
        before = {row.device_id for row in await self._db.get_devices(self._user_id(req.localpart))}
        await self._db.deactivate_account(req.localpart, self._user_id(req.localpart))
        await self.revocations.publish(self._user_id(req.localpart))
        await self._forget_deleted_devices(self._user_id(req.localpart), before)
        return pb.Account(user_id=self._user_id(row.localpart), localpart=row.localpart,
                          created_ts=row.created_ts, is_guest=row.is_guest, deactivated=True)

    # -- account data and pushers ------------------------------------------------

    def _account_data(self, user_id: str, row: AccountDataRow) -> pb.AccountData:
        return pb.AccountData(user_id=user_id, room_id=row.room_id, type=row.type,
                              content_json=row.content_json.encode())

    async def query_account_data(self, req: pb.QueryAccountDataRequest) -> pb.QueryAccountDataResponse:
        self._localpart_of(req.user_id)
        if req.type:
            found = await self._db.get_account_data(req.user_id, req.room_id, req.type)
            if found is None:
                raise errors.NotFound("Account data not found")
            return pb.QueryAccountDataResponse(account_data=[self._account_data(req.user_id, found)])
        scope = None if req.all_rooms else req.room_id
        rows = await self._db.get_all_account_data(req.user_id, scope)
        return pb.QueryAccountDataResponse(account_data=[self._account_data(req.user_id, r) for r in rows])

    async def perform_account_data_update(self, req: pb.AccountData) -> pb.PerformAccountDataUpdateResponse:
        self._localpart_of(req.user_id)
        if not req.type:
            raise errors.InvalidParam("account data needs a type")
        try:
            content = json.loads(req.content_json)
        except ValueError:
            raise errors.NotJSON("Content not JSON.") from None
        if not isinstance(content, dict):
            raise errors.BadJSON("Content must be a JSON object.")
        content_json = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        entry = self._account_data_locks.setdefault(req.user_id, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                await self._db.set_account_data(req.user_id, req.room_id, req.type, content_json)
                offset = 0
                if self._account_data_producer is not None:
                    # After the commit: a failure here fails the request, and the
                    # client's retry (a PUT is idempotent) publishes it again.
                    offset = await self._account_data_producer.send(account_data_log_pb2.AccountDataChange(
                        user_id=req.user_id, room_id=req.room_id, type=req.type,
                        content_json=content_json.encode()))
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._account_data_locks[req.user_id]
        return pb.PerformAccountDataUpdateResponse(log_offset=offset)

    async def query_pushers(self, req: pb.QueryPushersRequest) -> pb.QueryPushersResponse:
        rows = await self._db.get_pushers(req.user_id)
        return pb.QueryPushersResponse(pushers=[
            pb.Pusher(pushkey=r.pushkey, kind=r.kind, app_id=r.app_id, app_display_name=r.app_display_name,
                      device_display_name=r.device_display_name, profile_tag=r.profile_tag, lang=r.lang,
                      data_json=r.data_json.encode(), pushkey_ts=r.created_ts)
            for r in rows])

    async def perform_pusher_set(self, req: pb.PerformPusherSetRequest) -> pb.PerformPusherSetResponse:
        self._localpart_of(req.user_id)
        pusher = req.pusher
        if not pusher.app_id or not pusher.pushkey:
            raise errors.MissingParam("app_id and pushkey are required")
        if not pusher.kind:
            await self._db.delete_pusher(req.user_id, pusher.app_id, pusher.pushkey)
            return pb.PerformPusherSetResponse()
        await self._db.set_pusher(PusherRow(
            user_id=req.user_id, app_id=pusher.app_id, pushkey=pusher.pushkey, kind=pusher.kind,
            app_display_name=pusher.app_display_name, device_display_name=pusher.device_display_name,
            profile_tag=pusher.profile_tag, lang=pusher.lang,
            data_json=pusher.data_json.decode() or "{}", created_ts=_now_ms()), append=req.append)
        return pb.PerformPusherSetResponse()
