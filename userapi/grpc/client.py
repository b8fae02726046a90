"""The gRPC binding of ``userapi.api.UserAPI``: used by a component in
another process than the user API."""

from __future__ import annotations

from typing import Any, TypeVar

import grpc
from myelin.userapi.v1 import device_list_log_pb2 as dl_pb
from myelin.userapi.v1 import userapi_pb2 as pb
from myelin.userapi.v1 import userapi_pb2_grpc as pb_grpc

from common.grpc_binding import call_remote

Resp = TypeVar("Resp")


class GrpcUserAPIClient:
    """Implements ``userapi.api.UserAPI`` over a ``grpc.aio`` channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub: Any = pb_grpc.UserAPIStub(channel)

    async def query_access_token(self, req: pb.QueryAccessTokenRequest) -> pb.Device:
        return await call_remote(self._stub.QueryAccessToken, req)

    async def query_account_availability(
            self, req: pb.QueryAccountAvailabilityRequest) -> pb.QueryAccountAvailabilityResponse:
        return await call_remote(self._stub.QueryAccountAvailability, req)

    async def perform_account_creation(self, req: pb.PerformAccountCreationRequest) -> pb.Account:
        return await call_remote(self._stub.PerformAccountCreation, req)

    async def perform_password_check(self, req: pb.PerformPasswordCheckRequest) -> pb.Account:
        return await call_remote(self._stub.PerformPasswordCheck, req)

    async def perform_device_creation(self, req: pb.PerformDeviceCreationRequest) -> pb.Device:
        return await call_remote(self._stub.PerformDeviceCreation, req)

    async def perform_device_deletion(
            self, req: pb.PerformDeviceDeletionRequest) -> pb.PerformDeviceDeletionResponse:
        return await call_remote(self._stub.PerformDeviceDeletion, req)

    async def query_devices(self, req: pb.QueryDevicesRequest) -> pb.QueryDevicesResponse:
        return await call_remote(self._stub.QueryDevices, req)

    async def query_profile(self, req: pb.QueryProfileRequest) -> pb.Profile:
        return await call_remote(self._stub.QueryProfile, req)

    async def perform_profile_update(self, req: pb.PerformProfileUpdateRequest) -> pb.Profile:
        return await call_remote(self._stub.PerformProfileUpdate, req)

    async def perform_password_update(
            self, req: pb.PerformPasswordUpdateRequest) -> pb.PerformPasswordUpdateResponse:
        return await call_remote(self._stub.PerformPasswordUpdate, req)

    async def perform_account_deactivation(self, req: pb.PerformAccountDeactivationRequest) -> pb.Account:
        return await call_remote(self._stub.PerformAccountDeactivation, req)

    async def query_account_data(self, req: pb.QueryAccountDataRequest) -> pb.QueryAccountDataResponse:
        return await call_remote(self._stub.QueryAccountData, req)

    async def perform_account_data_update(self, req: pb.AccountData) -> pb.PerformAccountDataUpdateResponse:
        return await call_remote(self._stub.PerformAccountDataUpdate, req)

    async def query_pushers(self, req: pb.QueryPushersRequest) -> pb.QueryPushersResponse:
        return await call_remote(self._stub.QueryPushers, req)

    async def perform_pusher_set(self, req: pb.PerformPusherSetRequest) -> pb.PerformPusherSetResponse:
        return await call_remote(self._stub.PerformPusherSet, req)

    async def perform_token_refresh(self, req: pb.PerformTokenRefreshRequest) -> pb.Device:
        return await call_remote(self._stub.PerformTokenRefresh, req)

    async def perform_device_update(self, req: pb.PerformDeviceUpdateRequest) -> pb.Device:
        return await call_remote(self._stub.PerformDeviceUpdate, req)

    async def query_account(self, req: pb.QueryAccountRequest) -> pb.Account:
        return await call_remote(self._stub.QueryAccount, req)

    async def perform_guest_upgrade(self, req: pb.PerformGuestUpgradeRequest) -> pb.Account:
        return await call_remote(self._stub.PerformGuestUpgrade, req)

    async def perform_upload_keys(self, req: pb.PerformUploadKeysRequest) -> pb.OneTimeKeyCounts:
        return await call_remote(self._stub.PerformUploadKeys, req)

    async def query_one_time_key_counts(self, req: pb.QueryOneTimeKeyCountsRequest) -> pb.OneTimeKeyCounts:
        return await call_remote(self._stub.QueryOneTimeKeyCounts, req)

    async def query_keys(self, req: pb.QueryKeysRequest) -> pb.QueryKeysResponse:
        return await call_remote(self._stub.QueryKeys, req)

    async def perform_claim_keys(self, req: pb.PerformClaimKeysRequest) -> pb.PerformClaimKeysResponse:
        return await call_remote(self._stub.PerformClaimKeys, req)

    async def perform_upload_device_signing_keys(self, req: pb.PerformUploadDeviceSigningKeysRequest) -> pb.PerformUploadDeviceSigningKeysResponse:
        return await call_remote(self._stub.PerformUploadDeviceSigningKeys, req)

    async def perform_upload_signatures(self, req: pb.PerformUploadSignaturesRequest) -> pb.PerformUploadSignaturesResponse:
        return await call_remote(self._stub.PerformUploadSignatures, req)

    async def query_user_devices(self, req: pb.QueryUserDevicesRequest) -> pb.UserDevices:
        return await call_remote(self._stub.QueryUserDevices, req)

    async def perform_remote_device_list_update(self, req: dl_pb.DeviceListUpdate) -> pb.PerformRemoteDeviceListUpdateResponse:
        return await call_remote(self._stub.PerformRemoteDeviceListUpdate, req)

    async def perform_remote_device_list_resync(self, req: pb.UserDevices) -> pb.PerformRemoteDeviceListResyncResponse:
        return await call_remote(self._stub.PerformRemoteDeviceListResync, req)

    async def perform_remote_signing_key_update(self, req: pb.PerformRemoteSigningKeyUpdateRequest) -> pb.PerformRemoteSigningKeyUpdateResponse:
        return await call_remote(self._stub.PerformRemoteSigningKeyUpdate, req)

    async def query_key_backup_version(self, req: pb.QueryKeyBackupVersionRequest) -> pb.KeyBackupVersion:
        return await call_remote(self._stub.QueryKeyBackupVersion, req)

    async def perform_key_backup_version(self, req: pb.PerformKeyBackupVersionRequest) -> pb.KeyBackupVersion:
        return await call_remote(self._stub.PerformKeyBackupVersion, req)

    async def perform_key_backup_keys_upload(self, req: pb.PerformKeyBackupKeysUploadRequest) -> pb.KeyBackupKeysResponse:
        return await call_remote(self._stub.PerformKeyBackupKeysUpload, req)

    async def query_key_backup_keys(self, req: pb.KeyBackupKeysSelector) -> pb.QueryKeyBackupKeysResponse:
        return await call_remote(self._stub.QueryKeyBackupKeys, req)

    async def perform_key_backup_keys_deletion(self, req: pb.KeyBackupKeysSelector) -> pb.KeyBackupKeysResponse:
        return await call_remote(self._stub.PerformKeyBackupKeysDeletion, req)
