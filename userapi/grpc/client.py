"""The gRPC binding of ``userapi.api.UserAPI``: used by a component in
another process than the user API."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar

import grpc
from myelin.userapi.v1 import device_list_log_pb2 as dl_pb
from myelin.userapi.v1 import userapi_pb2 as pb
from myelin.userapi.v1 import userapi_pb2_grpc as pb_grpc

from common.grpc_binding import call_remote
from userapi.grpc.server import HEARTBEAT_SECONDS
from userapi.grpc.token_cache import TokenCache

Resp = TypeVar("Resp")

logger = logging.getLogger(__name__)

# A revocation stream silent this long (heartbeats every HEARTBEAT_SECONDS)
# is taken for broken.
SILENCE_SECONDS = 3 * HEARTBEAT_SECONDS
# Waits between attempts to subscribe again.
RESUBSCRIBE_FIRST_DELAY = 0.1
RESUBSCRIBE_MAX_DELAY = 5.0


class GrpcUserAPIClient:
    """Implements ``userapi.api.UserAPI`` over a ``grpc.aio`` channel.

    Access token lookups are answered from ``token_cache`` while the user
    API's revocation stream is followed (see ``userapi/grpc/token_cache.py``);
    ``cache_tokens=False`` asks the user API every time."""

    def __init__(self, channel: grpc.aio.Channel, *, cache_tokens: bool = True) -> None:
        self._stub: Any = pb_grpc.UserAPIStub(channel)
        self.token_cache: TokenCache | None = TokenCache() if cache_tokens else None
        self._following: asyncio.Task[None] | None = None
        self._closed = False

    async def close(self) -> None:
        """Stops following the revocation stream (the channel is the caller's)."""
        self._closed = True
        if self._following is not None:
            self._following.cancel()
            # asyncio.wait, not awaiting the task: the follower's own
            # cancellation is expected, a cancellation of this caller is not
            # to be swallowed.
            await asyncio.wait({self._following})
            self._following = None

    async def query_access_token(self, req: pb.QueryAccessTokenRequest) -> pb.Device:
        cache = self.token_cache
        if cache is None:
            answer: pb.Device = await call_remote(self._stub.QueryAccessToken, req)
            return answer
        self._follow(cache)
        found = cache.get(req.access_token)
        if found is not None:
            return found
        generation = cache.begin()
        device: pb.Device = await call_remote(self._stub.QueryAccessToken, req)
        cache.put(req.access_token, device, generation)
        return device

    def _follow(self, cache: TokenCache) -> None:
        """Starts following the revocation stream, once (answers are kept only meanwhile)."""
        if self._following is None and not self._closed:
            self._following = asyncio.get_running_loop().create_task(self._follow_revocations(cache))

    async def _follow_revocations(self, cache: TokenCache) -> None:
        """Keeps the revocation stream subscribed while this client lives."""
        delay = RESUBSCRIBE_FIRST_DELAY
        while not self._closed:
            call: Any = None
            try:
                call = self._stub.WatchTokenRevocations()
                while not self._closed:
                    # Not asyncio.wait_for: on Python 3.11 it swallows a
                    # cancellation that lands as the read completes, and
                    # close() would then wait for this loop forever.
                    async with asyncio.timeout(SILENCE_SECONDS):
                        message = await call.read()
                    if message is grpc.aio.EOF:
                        break
                    cache.apply(message)
                    if message.sequence:
                        # Applied: the revoking call may answer.
                        await call.write(pb.TokenRevocationAck(sequence=message.sequence))
                    delay = RESUBSCRIBE_FIRST_DELAY
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    logger.info("the user API publishes no token revocations: tokens are not cached")
                    cache.disconnected()
                    return
                logger.debug("token revocation stream broke: %s", e.code())
            except TimeoutError:
                logger.warning("token revocation stream silent for %.0f s: subscribing again", SILENCE_SECONDS)
            except grpc.aio.UsageError:
                # The channel was closed: this client is done.
                cache.disconnected()
                return
            finally:
                cache.disconnected()
                if call is not None:
                    call.cancel()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESUBSCRIBE_MAX_DELAY)

    def _revoked(self, user_id: str, device_ids: list[str] | None = None) -> None:
        if self.token_cache is not None:
            self.token_cache.revoke(user_id, device_ids or ())

    def _revoked_localpart(self, localpart: str) -> None:
        if self.token_cache is not None:
            self.token_cache.revoke_localpart(localpart)

    async def query_account_availability(
            self, req: pb.QueryAccountAvailabilityRequest) -> pb.QueryAccountAvailabilityResponse:
        return await call_remote(self._stub.QueryAccountAvailability, req)

    async def perform_account_creation(self, req: pb.PerformAccountCreationRequest) -> pb.Account:
        return await call_remote(self._stub.PerformAccountCreation, req)

    async def perform_password_check(self, req: pb.PerformPasswordCheckRequest) -> pb.Account:
        return await call_remote(self._stub.PerformPasswordCheck, req)

    # The calls below that end or change what a token lookup answers drop
    # the answers this process remembers as soon as they return (or fail:
    # the change may have been made), before the stream's copy comes.

    async def perform_device_creation(self, req: pb.PerformDeviceCreationRequest) -> pb.Device:
        generation = 0
        if self.token_cache is not None:
            self._follow(self.token_cache)
            generation = self.token_cache.begin()
        try:
            created: pb.Device = await call_remote(self._stub.PerformDeviceCreation, req)
        finally:
            if req.device_id:
                self._revoked(req.user_id, [req.device_id])
        if not req.device_id:
            self._remember_created(created, generation)
        return created

    def _remember_created(self, created: pb.Device, generation: int) -> None:
        """A new device's token is known here without asking: the client's
        first request with it (the one after its login or registration)
        then needs no lookup. Kept as a lookup's answer would be, on the
        same terms (``TokenCache.put``): a token without expiry or refresh
        token, and only if nothing was revoked while it was being created
        (a logout of every device racing the login)."""
        if self.token_cache is None or not created.access_token or created.expires_in_ms or created.refresh_token:
            return
        answer = pb.Device(user_id=created.user_id, device_id=created.device_id,
                           display_name=created.display_name, last_seen_ts=created.last_seen_ts,
                           last_seen_ip=created.last_seen_ip, is_guest=created.is_guest, cacheable=True)
        self.token_cache.put(created.access_token, answer, generation)

    async def perform_device_deletion(
            self, req: pb.PerformDeviceDeletionRequest) -> pb.PerformDeviceDeletionResponse:
        try:
            return await call_remote(self._stub.PerformDeviceDeletion, req)
        finally:
            self._revoked(req.user_id, list(req.device_ids))

    async def query_devices(self, req: pb.QueryDevicesRequest) -> pb.QueryDevicesResponse:
        return await call_remote(self._stub.QueryDevices, req)

    async def query_profile(self, req: pb.QueryProfileRequest) -> pb.Profile:
        return await call_remote(self._stub.QueryProfile, req)

    async def perform_profile_update(self, req: pb.PerformProfileUpdateRequest) -> pb.Profile:
        return await call_remote(self._stub.PerformProfileUpdate, req)

    async def perform_password_update(
            self, req: pb.PerformPasswordUpdateRequest) -> pb.PerformPasswordUpdateResponse:
        try:
            return await call_remote(self._stub.PerformPasswordUpdate, req)
        finally:
            self._revoked_localpart(req.localpart)

    async def perform_account_deactivation(self, req: pb.PerformAccountDeactivationRequest) -> pb.Account:
        try:
            return await call_remote(self._stub.PerformAccountDeactivation, req)
        finally:
            self._revoked_localpart(req.localpart)

    async def query_account_data(self, req: pb.QueryAccountDataRequest) -> pb.QueryAccountDataResponse:
        return await call_remote(self._stub.QueryAccountData, req)

    async def perform_account_data_update(self, req: pb.AccountData) -> pb.PerformAccountDataUpdateResponse:
        return await call_remote(self._stub.PerformAccountDataUpdate, req)

    async def query_pushers(self, req: pb.QueryPushersRequest) -> pb.QueryPushersResponse:
        return await call_remote(self._stub.QueryPushers, req)

    async def perform_pusher_set(self, req: pb.PerformPusherSetRequest) -> pb.PerformPusherSetResponse:
        return await call_remote(self._stub.PerformPusherSet, req)

    async def perform_token_refresh(self, req: pb.PerformTokenRefreshRequest) -> pb.Device:
        refreshed: pb.Device | None = None
        try:
            answer: pb.Device = await call_remote(self._stub.PerformTokenRefresh, req)
            refreshed = answer
            return answer
        finally:
            if refreshed is not None:
                self._revoked(refreshed.user_id, [refreshed.device_id])
            elif self.token_cache is not None:
                # Whose token it was is unknown.
                self.token_cache.revoke_all()

    async def perform_device_update(self, req: pb.PerformDeviceUpdateRequest) -> pb.Device:
        try:
            return await call_remote(self._stub.PerformDeviceUpdate, req)
        finally:
            self._revoked(req.user_id, [req.device_id])

    async def query_account(self, req: pb.QueryAccountRequest) -> pb.Account:
        return await call_remote(self._stub.QueryAccount, req)

    async def perform_guest_upgrade(self, req: pb.PerformGuestUpgradeRequest) -> pb.Account:
        try:
            return await call_remote(self._stub.PerformGuestUpgrade, req)
        finally:
            self._revoked_localpart(req.localpart)

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
