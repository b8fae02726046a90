"""The user API's Python interface (accounts, devices, access tokens).

Requests and responses are the messages of protos/myelin/userapi/v1/userapi.proto;
the in-process binding is the implementation itself, the gRPC binding is
``userapi.grpc.client``. Failures are ``common.errors.MatrixError``s
(``UnknownToken``, ``UserInUse``, ``Forbidden``, ``NotFound``...).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from myelin.userapi.v1 import userapi_pb2 as pb


class AuthenticationAPI(Protocol):
    """What every front that serves clients needs: who is calling."""

    async def query_access_token(self, req: pb.QueryAccessTokenRequest) -> pb.Device: ...


@runtime_checkable
class AccountDataQueryAPI(Protocol):
    """What the sync API asks when it must rebuild its copy of account data."""

    async def query_account_data(self, req: pb.QueryAccountDataRequest) -> pb.QueryAccountDataResponse: ...


class UserAPI(AuthenticationAPI, AccountDataQueryAPI, Protocol):
    async def query_account_availability(
        self, req: pb.QueryAccountAvailabilityRequest) -> pb.QueryAccountAvailabilityResponse: ...

    async def perform_account_creation(self, req: pb.PerformAccountCreationRequest) -> pb.Account: ...

    async def perform_password_check(self, req: pb.PerformPasswordCheckRequest) -> pb.Account: ...

    async def perform_device_creation(self, req: pb.PerformDeviceCreationRequest) -> pb.Device: ...

    async def perform_device_deletion(
        self, req: pb.PerformDeviceDeletionRequest) -> pb.PerformDeviceDeletionResponse: ...

    async def query_devices(self, req: pb.QueryDevicesRequest) -> pb.QueryDevicesResponse: ...

    async def query_profile(self, req: pb.QueryProfileRequest) -> pb.Profile: ...

    async def perform_profile_update(self, req: pb.PerformProfileUpdateRequest) -> pb.Profile: ...

    async def perform_password_update(
        self, req: pb.PerformPasswordUpdateRequest) -> pb.PerformPasswordUpdateResponse: ...

    async def perform_account_deactivation(self, req: pb.PerformAccountDeactivationRequest) -> pb.Account: ...

    async def perform_account_data_update(self, req: pb.AccountData) -> pb.PerformAccountDataUpdateResponse: ...

    async def query_pushers(self, req: pb.QueryPushersRequest) -> pb.QueryPushersResponse: ...

    async def perform_pusher_set(self, req: pb.PerformPusherSetRequest) -> pb.PerformPusherSetResponse: ...

    async def perform_token_refresh(self, req: pb.PerformTokenRefreshRequest) -> pb.Device: ...

    async def perform_device_update(self, req: pb.PerformDeviceUpdateRequest) -> pb.Device: ...
