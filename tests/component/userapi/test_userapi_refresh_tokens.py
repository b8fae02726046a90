"""Refresh tokens, expiring access tokens and device renames through both
bindings of the user API, and on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from myelin.userapi.v1 import userapi_pb2 as pb

from common import errors
from tests.component.userapi.conftest import CHEAP_SCRYPT, make_config
from userapi.api import UserAPI
from userapi.component import UserAPIComponent, open_userapi
from userapi.internal.userapi import UserAPIInternal


async def whoami(api: UserAPI, token: str) -> pb.Device:
    return await api.query_access_token(pb.QueryAccessTokenRequest(access_token=token))


async def refresh(api: UserAPI, token: str) -> pb.Device:
    return await api.perform_token_refresh(pb.PerformTokenRefreshRequest(refresh_token=token))


async def check_rotation(api: UserAPI) -> None:
    account = await api.perform_account_creation(pb.PerformAccountCreationRequest(localpart="ren", password="pw"))
    plain = await api.perform_device_creation(pb.PerformDeviceCreationRequest(user_id=account.user_id))
    assert (plain.refresh_token, plain.expires_in_ms) == ("", 0)
    first = await api.perform_device_creation(pb.PerformDeviceCreationRequest(
        user_id=account.user_id, device_id="PHONE", refresh_token=True))
    assert first.refresh_token and first.expires_in_ms > 0
    second = await refresh(api, first.refresh_token)
    assert second.device_id == "PHONE" and second.access_token != first.access_token
    assert (await whoami(api, first.access_token)).device_id == "PHONE"
    await whoami(api, second.access_token)
    with pytest.raises(errors.UnknownToken) as raised:
        await whoami(api, first.access_token)
    assert raised.value.extra.get("soft_logout") is False
    with pytest.raises(errors.UnknownToken):
        await refresh(api, first.refresh_token)
    third = await refresh(api, second.refresh_token)
    await refresh(api, third.refresh_token)
    with pytest.raises(errors.UnknownToken):
        await refresh(api, second.refresh_token)
    with pytest.raises(errors.UnknownToken):
        await refresh(api, "")
    # Deleting the device ends its refresh tokens too.
    latest = await refresh(api, third.refresh_token)
    await api.perform_device_deletion(pb.PerformDeviceDeletionRequest(user_id=account.user_id,
                                                                      device_ids=["PHONE"]))
    with pytest.raises(errors.UnknownToken):
        await refresh(api, latest.refresh_token)

    renamed = await api.perform_device_update(pb.PerformDeviceUpdateRequest(
        user_id=account.user_id, device_id=plain.device_id, display_name="Desk"))
    assert renamed.display_name == "Desk"
    devices = await api.query_devices(pb.QueryDevicesRequest(user_id=account.user_id))
    assert [d.display_name for d in devices.devices] == ["Desk"]
    with pytest.raises(errors.NotFound):
        await api.perform_device_update(pb.PerformDeviceUpdateRequest(
            user_id=account.user_id, device_id="NOPE", display_name="x"))


async def test_refresh_rotation_and_rename(userapi: UserAPI) -> None:
    await check_rotation(userapi)


async def test_expired_access_token_is_a_soft_logout(userapi: UserAPI,
                                                      userapi_component: UserAPIComponent) -> None:
    internal = userapi_component.api
    assert isinstance(internal, UserAPIInternal)
    internal.refreshable_token_lifetime_ms = 100
    account = await userapi.perform_account_creation(pb.PerformAccountCreationRequest(localpart="sol"))
    device = await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(
        user_id=account.user_id, refresh_token=True))
    assert device.expires_in_ms == 100
    await asyncio.sleep(0.15)
    with pytest.raises(errors.UnknownToken) as raised:
        await whoami(userapi, device.access_token)
    assert raised.value.extra.get("soft_logout") is True
    internal.nonrefreshable_token_lifetime_ms = 100
    plain = await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(user_id=account.user_id))
    assert plain.expires_in_ms == 100


@pytest.mark.postgres
async def test_on_postgresql(tmp_path: Path, fresh_postgres_database: str) -> None:
    component = await open_userapi(make_config(tmp_path, fresh_postgres_database), password_params=CHEAP_SCRYPT)
    try:
        await check_rotation(component.api)
    finally:
        await component.close()
