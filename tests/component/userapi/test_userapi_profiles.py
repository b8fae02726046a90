"""Profiles, password changes and deactivation through both bindings."""

from __future__ import annotations

import pytest
from myelin.userapi.v1 import userapi_pb2 as pb

from common import errors
from tests.component.userapi.conftest import SERVER_NAME
from userapi.api import UserAPI


async def register(api: UserAPI, localpart: str, password: str = "pw") -> pb.Account:
    return await api.perform_account_creation(
        pb.PerformAccountCreationRequest(localpart=localpart, password=password))


async def test_profile_defaults_and_updates(userapi: UserAPI) -> None:
    account = await register(userapi, "alice")
    profile = await userapi.query_profile(pb.QueryProfileRequest(user_id=account.user_id))
    assert (profile.user_id, profile.display_name, profile.avatar_url) == (account.user_id, "alice", "")
    updated = await userapi.perform_profile_update(pb.PerformProfileUpdateRequest(
        user_id=account.user_id, display_name="Alice A."))
    assert (updated.display_name, updated.avatar_url) == ("Alice A.", "")
    updated = await userapi.perform_profile_update(pb.PerformProfileUpdateRequest(
        user_id=account.user_id, avatar_url="mxc://x/y"))
    assert (updated.display_name, updated.avatar_url) == ("Alice A.", "mxc://x/y")
    updated = await userapi.perform_profile_update(pb.PerformProfileUpdateRequest(
        user_id=account.user_id, display_name=""))
    assert (updated.display_name, updated.avatar_url) == ("", "mxc://x/y")
    profile = await userapi.query_profile(pb.QueryProfileRequest(user_id=account.user_id))
    assert (profile.display_name, profile.avatar_url) == ("", "mxc://x/y")


async def test_profile_of_unknown_users(userapi: UserAPI) -> None:
    for user_id in [f"@ghost:{SERVER_NAME}", "@someone:remote.example"]:
        with pytest.raises(errors.NotFound):
            await userapi.query_profile(pb.QueryProfileRequest(user_id=user_id))
        with pytest.raises(errors.NotFound):
            await userapi.perform_profile_update(pb.PerformProfileUpdateRequest(user_id=user_id, display_name="x"))


async def test_password_update(userapi: UserAPI) -> None:
    account = await register(userapi, "bob", "old")
    devices = [await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(user_id=account.user_id))
               for _ in range(3)]
    answer = await userapi.perform_password_update(pb.PerformPasswordUpdateRequest(
        localpart="bob", new_password="new", log_out_devices=True, except_device_id=devices[0].device_id))
    assert answer.devices_deleted == 2
    with pytest.raises(errors.Forbidden):
        await userapi.perform_password_check(pb.PerformPasswordCheckRequest(localpart="bob", password="old"))
    await userapi.perform_password_check(pb.PerformPasswordCheckRequest(localpart="bob", password="new"))
    await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=devices[0].access_token))
    with pytest.raises(errors.UnknownToken):
        await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=devices[1].access_token))
    # Without log_out_devices every device stays.
    answer = await userapi.perform_password_update(pb.PerformPasswordUpdateRequest(
        localpart="bob", new_password="newer"))
    assert answer.devices_deleted == 0
    await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=devices[0].access_token))
    with pytest.raises(errors.InvalidParam):
        await userapi.perform_password_update(pb.PerformPasswordUpdateRequest(localpart="bob"))
    with pytest.raises(errors.NotFound):
        await userapi.perform_password_update(pb.PerformPasswordUpdateRequest(localpart="nobody", new_password="x"))


async def test_deactivation(userapi: UserAPI) -> None:
    account = await register(userapi, "carol")
    device = await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(user_id=account.user_id))
    await userapi.perform_profile_update(pb.PerformProfileUpdateRequest(
        user_id=account.user_id, display_name="Carol", avatar_url="mxc://a/b"))
    answer = await userapi.perform_account_deactivation(pb.PerformAccountDeactivationRequest(localpart="carol"))
    assert answer.deactivated and answer.user_id == account.user_id
    with pytest.raises(errors.UnknownToken):
        await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=device.access_token))
    with pytest.raises(errors.Forbidden):
        await userapi.perform_password_check(pb.PerformPasswordCheckRequest(localpart="carol", password="pw"))
    with pytest.raises(errors.NotFound):
        await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(user_id=account.user_id))
    profile = await userapi.query_profile(pb.QueryProfileRequest(user_id=account.user_id))
    assert (profile.display_name, profile.avatar_url) == ("", "")
    # The name is never given out again.
    with pytest.raises(errors.UserInUse):
        await register(userapi, "carol")
    with pytest.raises(errors.NotFound):
        await userapi.perform_account_deactivation(pb.PerformAccountDeactivationRequest(localpart="nobody"))
