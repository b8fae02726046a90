"""Serves any ``UserAPI`` implementation over gRPC (``grpc.aio``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from myelin.userapi.v1 import device_list_log_pb2 as dl_pb
from myelin.userapi.v1 import userapi_pb2 as pb
from myelin.userapi.v1 import userapi_pb2_grpc as pb_grpc

from common.grpc_binding import GRPC_OPTIONS, serve_call
from userapi.api import UserAPI
from userapi.internal.revocations import TokenRevocations

# How often a quiet revocation stream carries a heartbeat. A watcher treats
# a stream silent for several of these as broken (token_cache.py).
HEARTBEAT_SECONDS = 5.0


class UserAPIServicer(pb_grpc.UserAPIServicer):
    def __init__(self, impl: UserAPI) -> None:
        self._impl = impl

    async def QueryAccessToken(self, request: pb.QueryAccessTokenRequest,  # type: ignore[override]
                               context: grpc.aio.ServicerContext) -> pb.Device:  # type: ignore[type-arg]
        return await serve_call(self._impl.query_access_token, request, context)

    async def WatchTokenRevocations(  # type: ignore[override]
            self, request_iterator: AsyncIterator[pb.TokenRevocationAck],
            context: grpc.aio.ServicerContext) -> AsyncIterator[pb.TokenRevocation]:  # type: ignore[type-arg]
        revocations = getattr(self._impl, "revocations", None)
        if not isinstance(revocations, TokenRevocations):
            # An implementation that publishes nothing: its answers may not be cached.
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this user API publishes no revocations")
            return
        with revocations.watch() as watcher:

            async def read_acknowledgements() -> None:
                try:
                    async for ack in request_iterator:
                        watcher.acknowledge(ack.sequence)
                finally:
                    # The watcher stopped listening.
                    watcher.cut_off.set()

            reader = asyncio.create_task(read_acknowledgements())
            try:
                yield pb.TokenRevocation(subscribed=True)
                while not watcher.cut_off.is_set():
                    revocation = await watcher.next(HEARTBEAT_SECONDS)
                    if watcher.cut_off.is_set():
                        break
                    yield revocation if revocation is not None else pb.TokenRevocation()
            finally:
                reader.cancel()
            await context.abort(grpc.StatusCode.ABORTED, "token revocation watcher cut off")

    async def QueryAccountAvailability(  # type: ignore[override]
            self, request: pb.QueryAccountAvailabilityRequest,
            context: grpc.aio.ServicerContext) -> pb.QueryAccountAvailabilityResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.query_account_availability, request, context)

    async def PerformAccountCreation(  # type: ignore[override]
            self, request: pb.PerformAccountCreationRequest,
            context: grpc.aio.ServicerContext) -> pb.Account:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_account_creation, request, context)

    async def PerformPasswordCheck(  # type: ignore[override]
            self, request: pb.PerformPasswordCheckRequest,
            context: grpc.aio.ServicerContext) -> pb.Account:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_password_check, request, context)

    async def PerformDeviceCreation(  # type: ignore[override]
            self, request: pb.PerformDeviceCreationRequest,
            context: grpc.aio.ServicerContext) -> pb.Device:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_device_creation, request, context)

    async def PerformDeviceDeletion(  # type: ignore[override]
            self, request: pb.PerformDeviceDeletionRequest,
            context: grpc.aio.ServicerContext) -> pb.PerformDeviceDeletionResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_device_deletion, request, context)

    async def QueryDevices(  # type: ignore[override]
            self, request: pb.QueryDevicesRequest,
            context: grpc.aio.ServicerContext) -> pb.QueryDevicesResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.query_devices, request, context)

    async def QueryProfile(  # type: ignore[override]
            self, request: pb.QueryProfileRequest,
            context: grpc.aio.ServicerContext) -> pb.Profile:  # type: ignore[type-arg]
        return await serve_call(self._impl.query_profile, request, context)

    async def PerformProfileUpdate(  # type: ignore[override]
            self, request: pb.PerformProfileUpdateRequest,
            context: grpc.aio.ServicerContext) -> pb.Profile:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_profile_update, request, context)

    async def PerformPasswordUpdate(  # type: ignore[override]
            self, request: pb.PerformPasswordUpdateRequest,
            context: grpc.aio.ServicerContext) -> pb.PerformPasswordUpdateResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_password_update, request, context)

    async def PerformAccountDeactivation(  # type: ignore[override]
            self, request: pb.PerformAccountDeactivationRequest,
            context: grpc.aio.ServicerContext) -> pb.Account:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_account_deactivation, request, context)

    async def QueryAccountData(  # type: ignore[override]
            self, request: pb.QueryAccountDataRequest,
            context: grpc.aio.ServicerContext) -> pb.QueryAccountDataResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.query_account_data, request, context)

    async def PerformAccountDataUpdate(  # type: ignore[override]
            self, request: pb.AccountData,
            context: grpc.aio.ServicerContext) -> pb.PerformAccountDataUpdateResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_account_data_update, request, context)

    async def QueryPushers(  # type: ignore[override]
            self, request: pb.QueryPushersRequest,
            context: grpc.aio.ServicerContext) -> pb.QueryPushersResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.query_pushers, request, context)

    async def PerformPusherSet(  # type: ignore[override]
            self, request: pb.PerformPusherSetRequest,
            context: grpc.aio.ServicerContext) -> pb.PerformPusherSetResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_pusher_set, request, context)

    async def PerformTokenRefresh(  # type: ignore[override]
            self, request: pb.PerformTokenRefreshRequest,
            context: grpc.aio.ServicerContext) -> pb.Device:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_token_refresh, request, context)

    async def PerformDeviceUpdate(  # type: ignore[override]
            self, request: pb.PerformDeviceUpdateRequest,
            context: grpc.aio.ServicerContext) -> pb.Device:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_device_update, request, context)

    async def QueryAccount(  # type: ignore[override]
            self, request: pb.QueryAccountRequest,
            context: grpc.aio.ServicerContext) -> pb.Account:  # type: ignore[type-arg]
        return await serve_call(self._impl.query_account, request, context)

    async def PerformGuestUpgrade(  # type: ignore[override]
            self, request: pb.PerformGuestUpgradeRequest,
            context: grpc.aio.ServicerContext) -> pb.Account:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_guest_upgrade, request, context)

    async def PerformUploadKeys(  # type: ignore[override]
            self, request: pb.PerformUploadKeysRequest,
            context: grpc.aio.ServicerContext) -> pb.OneTimeKeyCounts:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_upload_keys, request, context)

    async def QueryOneTimeKeyCounts(  # type: ignore[override]
            self, request: pb.QueryOneTimeKeyCountsRequest,
            context: grpc.aio.ServicerContext) -> pb.OneTimeKeyCounts:  # type: ignore[type-arg]
        return await serve_call(self._impl.query_one_time_key_counts, request, context)

    async def QueryKeys(  # type: ignore[override]
            self, request: pb.QueryKeysRequest,
            context: grpc.aio.ServicerContext) -> pb.QueryKeysResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.query_keys, request, context)

    async def PerformClaimKeys(  # type: ignore[override]
            self, request: pb.PerformClaimKeysRequest,
            context: grpc.aio.ServicerContext) -> pb.PerformClaimKeysResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_claim_keys, request, context)

    async def PerformUploadDeviceSigningKeys(  # type: ignore[override]
            self, request: pb.PerformUploadDeviceSigningKeysRequest,
            context: grpc.aio.ServicerContext) -> pb.PerformUploadDeviceSigningKeysResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_upload_device_signing_keys, request, context)

    async def PerformUploadSignatures(  # type: ignore[override]
            self, request: pb.PerformUploadSignaturesRequest,
            context: grpc.aio.ServicerContext) -> pb.PerformUploadSignaturesResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_upload_signatures, request, context)

    async def QueryUserDevices(  # type: ignore[override]
            self, request: pb.QueryUserDevicesRequest,
            context: grpc.aio.ServicerContext) -> pb.UserDevices:  # type: ignore[type-arg]
        return await serve_call(self._impl.query_user_devices, request, context)

    async def PerformRemoteDeviceListUpdate(  # type: ignore[override]
            self, request: dl_pb.DeviceListUpdate,
            context: grpc.aio.ServicerContext) -> pb.PerformRemoteDeviceListUpdateResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_remote_device_list_update, request, context)

    async def PerformRemoteDeviceListResync(  # type: ignore[override]
            self, request: pb.UserDevices,
            context: grpc.aio.ServicerContext) -> pb.PerformRemoteDeviceListResyncResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_remote_device_list_resync, request, context)

    async def PerformRemoteSigningKeyUpdate(  # type: ignore[override]
            self, request: pb.PerformRemoteSigningKeyUpdateRequest,
            context: grpc.aio.ServicerContext) -> pb.PerformRemoteSigningKeyUpdateResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_remote_signing_key_update, request, context)

    async def QueryKeyBackupVersion(  # type: ignore[override]
            self, request: pb.QueryKeyBackupVersionRequest,
            context: grpc.aio.ServicerContext) -> pb.KeyBackupVersion:  # type: ignore[type-arg]
        return await serve_call(self._impl.query_key_backup_version, request, context)

    async def PerformKeyBackupVersion(  # type: ignore[override]
            self, request: pb.PerformKeyBackupVersionRequest,
            context: grpc.aio.ServicerContext) -> pb.KeyBackupVersion:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_key_backup_version, request, context)

    async def PerformKeyBackupKeysUpload(  # type: ignore[override]
            self, request: pb.PerformKeyBackupKeysUploadRequest,
            context: grpc.aio.ServicerContext) -> pb.KeyBackupKeysResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_key_backup_keys_upload, request, context)

    async def QueryKeyBackupKeys(  # type: ignore[override]
            self, request: pb.KeyBackupKeysSelector,
            context: grpc.aio.ServicerContext) -> pb.QueryKeyBackupKeysResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.query_key_backup_keys, request, context)

    async def PerformKeyBackupKeysDeletion(  # type: ignore[override]
            self, request: pb.KeyBackupKeysSelector,
            context: grpc.aio.ServicerContext) -> pb.KeyBackupKeysResponse:  # type: ignore[type-arg]
        return await serve_call(self._impl.perform_key_backup_keys_deletion, request, context)


async def serve_grpc(api: UserAPI, address: str) -> tuple[grpc.aio.Server, int]:
    """Starts a gRPC server for ``api`` on ``address`` ("host:port"; port 0
    picks a free one). The caller stops the returned server."""
    server = grpc.aio.server(options=GRPC_OPTIONS)
    pb_grpc.add_UserAPIServicer_to_server(UserAPIServicer(api), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not listen on {address}")
    await server.start()
    return server, port
