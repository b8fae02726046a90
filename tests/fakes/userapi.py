"""An in-memory user API for component tests of the fronts that only need
to authenticate callers (``userapi.api.AuthenticationAPI``), or a little
more (``UserAPI``): accounts without password hashing, devices and tokens
in dicts. ``add_user`` makes a ready-to-use token."""

from __future__ import annotations

import secrets
import time

from myelin.userapi.v1 import device_list_log_pb2 as dl_pb
from myelin.userapi.v1 import userapi_pb2 as pb

from common import errors


class FakeKeys:
    """The key verbs of the fake: nobody has keys, no backup exists, and
    what is uploaded is forgotten (the real ones are tested on the real user API)."""

    async def perform_upload_keys(self, req: pb.PerformUploadKeysRequest) -> pb.OneTimeKeyCounts:
        return pb.OneTimeKeyCounts()

    async def query_one_time_key_counts(self, req: pb.QueryOneTimeKeyCountsRequest) -> pb.OneTimeKeyCounts:
        return pb.OneTimeKeyCounts()

    async def query_keys(self, req: pb.QueryKeysRequest) -> pb.QueryKeysResponse:
        return pb.QueryKeysResponse(device_keys_json=b"{}", master_keys_json=b"{}", self_signing_keys_json=b"{}",
                                    user_signing_keys_json=b"{}")

    async def perform_claim_keys(self, req: pb.PerformClaimKeysRequest) -> pb.PerformClaimKeysResponse:
        return pb.PerformClaimKeysResponse(one_time_keys_json=b"{}")

    async def perform_upload_device_signing_keys(
            self, req: pb.PerformUploadDeviceSigningKeysRequest) -> pb.PerformUploadDeviceSigningKeysResponse:
        return pb.PerformUploadDeviceSigningKeysResponse()

    async def perform_upload_signatures(
            self, req: pb.PerformUploadSignaturesRequest) -> pb.PerformUploadSignaturesResponse:
        return pb.PerformUploadSignaturesResponse(failures_json=b"{}")

    async def query_user_devices(self, req: pb.QueryUserDevicesRequest) -> pb.UserDevices:
        return pb.UserDevices(user_id=req.user_id, devices_json=b"[]")

    async def perform_remote_device_list_update(
            self, req: dl_pb.DeviceListUpdate) -> pb.PerformRemoteDeviceListUpdateResponse:
        return pb.PerformRemoteDeviceListUpdateResponse()

    async def perform_remote_device_list_resync(self, req: pb.UserDevices) -> pb.PerformRemoteDeviceListResyncResponse:
        return pb.PerformRemoteDeviceListResyncResponse()

    async def perform_remote_signing_key_update(
            self, req: pb.PerformRemoteSigningKeyUpdateRequest) -> pb.PerformRemoteSigningKeyUpdateResponse:
        return pb.PerformRemoteSigningKeyUpdateResponse()

    async def query_key_backup_version(self, req: pb.QueryKeyBackupVersionRequest) -> pb.KeyBackupVersion:
        raise errors.NotFound("No current backup version")

    async def perform_key_backup_version(self, req: pb.PerformKeyBackupVersionRequest) -> pb.KeyBackupVersion:
        raise errors.NotFound("Unknown backup version")

    async def perform_key_backup_keys_upload(
            self, req: pb.PerformKeyBackupKeysUploadRequest) -> pb.KeyBackupKeysResponse:
        raise errors.NotFound("Unknown backup version")

    async def query_key_backup_keys(self, req: pb.KeyBackupKeysSelector) -> pb.QueryKeyBackupKeysResponse:
        raise errors.NotFound("Unknown backup version")

    async def perform_key_backup_keys_deletion(self, req: pb.KeyBackupKeysSelector) -> pb.KeyBackupKeysResponse:
        raise errors.NotFound("Unknown backup version")


class FakeUserAPI(FakeKeys):
    def __init__(self, server_name: str = "fake.test") -> None:
        self.server_name = server_name
        self.passwords: dict[str, str] = {}
        self.devices: dict[str, pb.Device] = {}  # access token -> device
        self.profiles: dict[str, pb.Profile] = {}  # user ID -> profile
        self.deactivated: set[str] = set()
        # (user ID, room ID or "", type) -> content JSON
        self.account_data: dict[tuple[str, str, str], bytes] = {}
        self.pushers: dict[tuple[str, str, str], pb.Pusher] = {}  # (user, app_id, pushkey)
        self.guests: set[str] = set()  # localparts of guest accounts

    def add_user(self, localpart: str, device_id: str = "FAKEDEVICE") -> tuple[str, str]:
        """Creates the account (if new) and a device; answers (user_id, token)."""
        self.passwords.setdefault(localpart, "")
        user_id = f"@{localpart}:{self.server_name}"
        token = "fake_" + secrets.token_urlsafe(16)
        self.devices[token] = pb.Device(user_id=user_id, device_id=device_id,
                                        last_seen_ts=int(time.time() * 1000), is_guest=localpart in self.guests)
        return user_id, token

    async def query_access_token(self, req: pb.QueryAccessTokenRequest) -> pb.Device:
        device = self.devices.get(req.access_token)
        if device is None:
            raise errors.UnknownToken("Unknown access token", extra={"soft_logout": False})
        return device

    async def query_account_availability(
            self, req: pb.QueryAccountAvailabilityRequest) -> pb.QueryAccountAvailabilityResponse:
        return pb.QueryAccountAvailabilityResponse(available=req.localpart not in self.passwords)

    async def perform_account_creation(self, req: pb.PerformAccountCreationRequest) -> pb.Account:
        if req.localpart in self.passwords:
            raise errors.UserInUse("User ID already taken.")
        self.passwords[req.localpart] = req.password
        if req.is_guest:
            self.guests.add(req.localpart)
        user_id = f"@{req.localpart}:{self.server_name}"
        self.profiles[user_id] = pb.Profile(user_id=user_id, display_name=req.localpart)
        return pb.Account(user_id=f"@{req.localpart}:{self.server_name}", localpart=req.localpart,
                          created_ts=int(time.time() * 1000), is_guest=req.is_guest)

    async def perform_password_check(self, req: pb.PerformPasswordCheckRequest) -> pb.Account:
        if not req.password or self.passwords.get(req.localpart) != req.password:
            raise errors.Forbidden("Invalid username or password")
        return pb.Account(user_id=f"@{req.localpart}:{self.server_name}", localpart=req.localpart)

    async def perform_device_creation(self, req: pb.PerformDeviceCreationRequest) -> pb.Device:
        localpart = req.user_id[1:].split(":", 1)[0]
        if localpart not in self.passwords:
            raise errors.NotFound(f"no account {req.user_id}")
        device_id = req.device_id or secrets.token_hex(5).upper()
        for token, device in list(self.devices.items()):
            if device.user_id == req.user_id and device.device_id == device_id:
                del self.devices[token]
        _, token = self.add_user(localpart, device_id)
        device = self.devices[token]
        device.display_name = req.display_name
        return pb.Device(user_id=device.user_id, device_id=device_id, display_name=req.display_name,
                         access_token=token, last_seen_ts=device.last_seen_ts, is_guest=device.is_guest)

    async def perform_device_deletion(
            self, req: pb.PerformDeviceDeletionRequest) -> pb.PerformDeviceDeletionResponse:
        chosen = set(req.device_ids)
        deleted = 0
        for token, device in list(self.devices.items()):
            if device.user_id != req.user_id or device.device_id == req.except_device_id:
                continue
            if chosen and device.device_id not in chosen:
                continue
            del self.devices[token]
            deleted += 1
        return pb.PerformDeviceDeletionResponse(deleted=deleted)

    async def perform_token_refresh(self, req: pb.PerformTokenRefreshRequest) -> pb.Device:
        # The fake issues no refresh tokens.
        raise errors.UnknownToken("Unknown refresh token", extra={"soft_logout": False})

    async def query_account(self, req: pb.QueryAccountRequest) -> pb.Account:
        if req.localpart not in self.passwords:
            raise errors.NotFound(f"no account {req.localpart}")
        return pb.Account(user_id=f"@{req.localpart}:{self.server_name}", localpart=req.localpart,
                          is_guest=req.localpart in self.guests)

    async def perform_guest_upgrade(self, req: pb.PerformGuestUpgradeRequest) -> pb.Account:
        if req.localpart not in self.guests:
            raise errors.NotFound(f"no guest account {req.localpart}")
        self.guests.discard(req.localpart)
        self.passwords[req.localpart] = req.password
        for device in self.devices.values():
            if device.user_id == f"@{req.localpart}:{self.server_name}":
                device.is_guest = False
        return pb.Account(user_id=f"@{req.localpart}:{self.server_name}", localpart=req.localpart)

    async def perform_device_update(self, req: pb.PerformDeviceUpdateRequest) -> pb.Device:
        found = [d for d in self.devices.values() if d.user_id == req.user_id and d.device_id == req.device_id]
        if not found:
            raise errors.NotFound("Device not found")
        for device in found:
            if req.HasField("display_name"):
                device.display_name = req.display_name
        return pb.Device(user_id=req.user_id, device_id=req.device_id, display_name=found[0].display_name)

    async def query_devices(self, req: pb.QueryDevicesRequest) -> pb.QueryDevicesResponse:
        return pb.QueryDevicesResponse(devices=[
            pb.Device(user_id=d.user_id, device_id=d.device_id, display_name=d.display_name,
                      last_seen_ts=d.last_seen_ts)
            for d in self.devices.values() if d.user_id == req.user_id])

    async def query_profile(self, req: pb.QueryProfileRequest) -> pb.Profile:
        found = self.profiles.get(req.user_id)
        if found is None:
            raise errors.NotFound("Profile was not found")
        return found

    async def perform_profile_update(self, req: pb.PerformProfileUpdateRequest) -> pb.Profile:
        found = self.profiles.get(req.user_id)
        if found is None:
            raise errors.NotFound("Profile was not found")
        if req.HasField("display_name"):
            found.display_name = req.display_name
        if req.HasField("avatar_url"):
            found.avatar_url = req.avatar_url
        return found

    async def perform_password_update(
            self, req: pb.PerformPasswordUpdateRequest) -> pb.PerformPasswordUpdateResponse:
        if req.localpart not in self.passwords:
            raise errors.NotFound("no such account")
        self.passwords[req.localpart] = req.new_password
        deleted = 0
        if req.log_out_devices:
            answer = await self.perform_device_deletion(pb.PerformDeviceDeletionRequest(
                user_id=f"@{req.localpart}:{self.server_name}", except_device_id=req.except_device_id))
            deleted = answer.deleted
        return pb.PerformPasswordUpdateResponse(devices_deleted=deleted)

    async def perform_account_deactivation(self, req: pb.PerformAccountDeactivationRequest) -> pb.Account:
        if req.localpart not in self.passwords:
            raise errors.NotFound("no such account")
        user_id = f"@{req.localpart}:{self.server_name}"
        self.passwords[req.localpart] = ""
        self.deactivated.add(req.localpart)
        self.profiles[user_id] = pb.Profile(user_id=user_id)
        await self.perform_device_deletion(pb.PerformDeviceDeletionRequest(user_id=user_id))
        return pb.Account(user_id=user_id, localpart=req.localpart, deactivated=True)

    async def query_account_data(self, req: pb.QueryAccountDataRequest) -> pb.QueryAccountDataResponse:
        if req.type:
            found = self.account_data.get((req.user_id, req.room_id, req.type))
            if found is None:
                raise errors.NotFound("Account data not found")
            return pb.QueryAccountDataResponse(account_data=[pb.AccountData(
                user_id=req.user_id, room_id=req.room_id, type=req.type, content_json=found)])
        return pb.QueryAccountDataResponse(account_data=[
            pb.AccountData(user_id=user_id, room_id=room_id, type=data_type, content_json=content)
            for (user_id, room_id, data_type), content in sorted(self.account_data.items())
            if user_id == req.user_id and (req.all_rooms or room_id == req.room_id)])

    async def perform_account_data_update(self, req: pb.AccountData) -> pb.PerformAccountDataUpdateResponse:
        self.account_data[(req.user_id, req.room_id, req.type)] = req.content_json
        return pb.PerformAccountDataUpdateResponse()

    async def query_pushers(self, req: pb.QueryPushersRequest) -> pb.QueryPushersResponse:
        return pb.QueryPushersResponse(pushers=[
            p for (user_id, _, _), p in self.pushers.items() if user_id == req.user_id])

    async def perform_pusher_set(self, req: pb.PerformPusherSetRequest) -> pb.PerformPusherSetResponse:
        key = (req.user_id, req.pusher.app_id, req.pusher.pushkey)
        if not req.pusher.kind:
            self.pushers.pop(key, None)
        else:
            self.pushers[key] = req.pusher
        return pb.PerformPusherSetResponse()
